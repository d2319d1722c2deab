/// Follows a restore task's log and turns pbs-restore's lines into an overall ratio (reference §4.4).
///
/// Disks are restored one after another; each prints `progress N% (…)` lines and ends with
/// `restore image complete (bytes=…)`. With the disk sizes known, overall progress is
/// (bytes of finished disks + N% of the current disk) ÷ total. Without them every disk
/// counts equally. Container restores print no percentage, so their ratio stays 0 until the end.
public struct RestoreProgress: Sendable, Equatable {
    /// Sizes of the disks in restore order, when known.
    public var diskSizes: [Int64]
    /// Disks whose `restore image complete` line was seen.
    public private(set) var completedDisks = 0
    /// Percent of the current disk.
    public private(set) var currentPercent = 0
    /// Bytes read so far as reported by pbs-restore (finished disks + current).
    public private(set) var bytesRead: Int64 = 0
    private var finishedBytes: Int64 = 0
    /// Whether a `TASK OK`/`TASK ERROR` line was seen.
    public private(set) var finished = false

    /// Creates a tracker for disks of these sizes (may be empty).
    public init(diskSizes: [Int64] = []) {
        self.diskSizes = diskSizes
    }

    /// Feeds one log line.
    public mutating func consume(_ line: String) {
        if let p = Self.parseProgress(line) {
            currentPercent = p.percent
            bytesRead = finishedBytes + p.bytes
        } else if let bytes = Self.parseComplete(line) {
            completedDisks += 1
            finishedBytes += bytes
            bytesRead = finishedBytes
            currentPercent = 0
        } else if line == "TASK OK" || line.hasPrefix("TASK WARNINGS") || line.hasPrefix("TASK ERROR") {
            finished = true
        }
    }

    /// Overall ratio 0…1.
    public var ratio: Double {
        if finished { return 1 }
        let disks = max(diskSizes.count, completedDisks + (currentPercent > 0 ? 1 : 0), 1)
        if !diskSizes.isEmpty {
            let total = diskSizes.reduce(0, +)
            guard total > 0 else { return 0 }
            let done = diskSizes.prefix(completedDisks).reduce(0, +)
            let current = completedDisks < diskSizes.count ? Double(diskSizes[completedDisks]) * Double(currentPercent) / 100 : 0
            return min(1, (Double(done) + current) / Double(total))
        }
        return min(1, (Double(completedDisks) + Double(currentPercent) / 100) / Double(disks))
    }

    /// `progress {pct}% (read {bytes} bytes, zeroes = {zpct}% ({zbytes} bytes), duration {secs} sec)`.
    public static func parseProgress(_ line: String) -> (percent: Int, bytes: Int64, zeroBytes: Int64, seconds: Int)? {
        guard line.hasPrefix("progress "), line.hasSuffix(" sec)") else { return nil }
        let scanner = Array(line.utf8)
        var numbers: [Int64] = []
        var current: Int64? = nil
        for c in scanner {
            if c >= 48 && c <= 57 {
                let (m, o1) = (current ?? 0).multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(c - 48))
                if o1 || o2 { return nil }
                current = a
            } else if let v = current { numbers.append(v); current = nil }
        }
        guard numbers.count == 5, numbers[0] <= 100 else { return nil }
        // Re-render and compare, so only the exact format is accepted.
        let rendered = "progress \(numbers[0])% (read \(numbers[1]) bytes, zeroes = \(numbers[2])% (\(numbers[3]) bytes), duration \(numbers[4]) sec)"
        guard rendered == line else { return nil }
        return (Int(numbers[0]), numbers[1], numbers[3], Int(numbers[4]))
    }

    /// `restore image complete (bytes={bytes}, duration={secs:.2}s, speed={mib:.2}MB/s)` → bytes.
    public static func parseComplete(_ line: String) -> Int64? {
        let prefix = "restore image complete (bytes="
        guard line.hasPrefix(prefix), line.hasSuffix("MB/s)") else { return nil }
        let rest = line.dropFirst(prefix.count)
        guard let comma = rest.firstIndex(of: ","), let bytes = Int64(rest[..<comma]) else { return nil }
        let tail = rest[comma...]
        guard tail.hasPrefix(", duration="), tail.contains("s, speed=") else { return nil }
        return bytes
    }
}
