import Foundation
import PBSDatastore

#if canImport(Glibc)
import Glibc
#endif

/// Before a delta writes: hashes a sample of the chunks that did not change between the copy's
/// backup and the new one — the first, the last and at least 16 at random per disk — and compares
/// them with the old index. Any difference means the copy was modified since its restore (a start
/// the task list did not show, a write from the host): the delta would leave a mix, so PVE
/// restores in full (`copy_modified`). Issue 15, "Content guard".
enum ContentGuard {
    /// Random samples per disk besides the first and last chunk.
    static let samples = 16

    /// nil when every sampled chunk matches; else what differs.
    static func check(_ job: DeltaJob) -> String? {
        var rng = SystemRandomNumberGenerator()
        for disk in job.disks {
            guard let old = disk.plan.from else { continue }
            let changed = Set(disk.plan.changed)
            let unchanged = (0..<old.chunkCount).filter { !changed.contains($0) }
            guard !unchanged.isEmpty else { continue }
            var picks = Set([unchanged[0], unchanged[unchanged.count - 1]])
            if unchanged.count <= samples + 2 { picks.formUnion(unchanged) } else {
                while picks.count < samples + 2 { picks.insert(unchanged[Int.random(in: 0..<unchanged.count, using: &rng)]) }
            }
            let fd = open(disk.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return "\(disk.path): cannot open (\(String(cString: strerror(errno))))" }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: Int(old.chunkSize))
            for i in picks.sorted() {
                let range = old.range(ofChunk: i), length = Int(range.count)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(range.lowerBound)) }
                guard n == length else { return "\(disk.path): chunk \(i) cannot be read" }
                let digest = buffer.withUnsafeBytes { ChunkDigest.of(buffer: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
                if digest != old.digests[i] { return "\(disk.volume): chunk \(i) (unchanged between the backups) differs from \(job.from)" }
            }
        }
        return nil
    }
}
