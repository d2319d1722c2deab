import Foundation
import Prometheus
import Synchronization

/// The standard `process_*` metrics of Prometheus client libraries, read from /proc/self on
/// each render: resident and virtual memory, CPU seconds, open and maximum file descriptors,
/// start time.
public final class ProcessMetrics: Sendable {
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    private let cpuSeconds: Counter
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let startTime: Gauge
    private let lastCPU = Mutex<Double>(0)

    /// Registers the metrics in `registry`.
    public init(registry: PrometheusCollectorRegistry) {
        residentMemory = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "resident_memory", unitName: "bytes", helpText: "Resident memory size in bytes."))
        virtualMemory = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "virtual_memory", unitName: "bytes", helpText: "Virtual memory size in bytes."))
        cpuSeconds = registry.makeCounter(descriptor: .init(namespace: "process", metricName: "cpu_seconds", unitName: "total", helpText: "Total user and system CPU time spent in seconds."))
        openFDs = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "open", unitName: "fds", helpText: "Number of open file descriptors."))
        maxFDs = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "max", unitName: "fds", helpText: "Maximum number of open file descriptors."))
        startTime = registry.makeGauge(descriptor: .init(namespace: "process", metricName: "start_time", unitName: "seconds", helpText: "Start time of the process since unix epoch in seconds."))
        update()
    }

    /// Reads /proc/self and updates the values (cheap: three small files and one directory).
    public func update() {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // Fields after "comm)": state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24.
            let f = stat[stat.index(after: close)...].split(separator: " ")
            if f.count > 22 {
                let utime = Double(f[11]) ?? 0, stime = Double(f[12]) ?? 0
                let cpu = (utime + stime) / ticks
                let previous = lastCPU.withLock { last in defer { last = max(last, cpu) }; return last }
                if cpu > previous { cpuSeconds.increment(by: cpu - previous) }
                virtualMemory.set(Double(f[20]) ?? 0)
                residentMemory.set((Double(f[21]) ?? 0) * pageSize)
                if let boot = Self.bootTime() { startTime.set(boot + (Double(f[19]) ?? 0) / ticks) }
            }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openFDs.set(Double(fds.count))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFDs.set(Double(limit.rlim_cur)) }
    }

    private static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
