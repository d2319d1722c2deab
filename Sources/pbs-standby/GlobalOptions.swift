import ArgumentParser
import CMalloc
import Foundation
import Logging
import MicroHTTP
import StandbyService

/// The default port: outside 9100–9999 (fully allocated on Prometheus' default-port page),
/// next to PVE's 8006 and PBS's 8007.
let defaultPort = 8216

/// Exporter-style flags shared by the service commands; they override the config file.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("config.file"), help: "Path of the YAML configuration file.")
    var configFile: String = "/etc/pbs-standby/config.yml"

    @Option(name: .customLong("web.listen-address"), help: "Address to listen on for metrics, status API and page (HOST:PORT, :PORT, [::1]:PORT).")
    var listenAddress: String?

    @Option(name: .customLong("web.config.file"), help: "Path of an exporter-toolkit web config (TLS, basic auth).")
    var webConfigFile: String?

    @Option(name: .customLong("state.path"), help: "Path of the SQLite state file.")
    var statePath: String?

    @Option(name: .customLong("log.level"), help: "debug, info, warn or error.")
    var logLevel: String = "info"

    @Option(name: .customLong("log.format"), help: "logfmt or json.")
    var logFormat: String = "logfmt"

    func validate() throws {
        guard ["debug", "info", "warn", "error"].contains(logLevel) else {
            throw ValidationError("--log.level: '\(logLevel)' is not one of debug, info, warn, error")
        }
        guard LogFormat(rawValue: logFormat) != nil else {
            throw ValidationError("--log.format: '\(logFormat)' is not one of logfmt, json")
        }
    }

    /// Sets up swift-log once for the process.
    func bootstrapLogging() {
        let level: Logger.Level = switch logLevel {
        case "debug": .debug
        case "warn": .warning
        case "error": .error
        default: .info
        }
        let format = LogFormat(rawValue: logFormat) ?? .logfmt
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, format: format, level: level) }
    }

    /// The listen address from the flag, the config, or the default.
    func listenAddress(configured: String?, fallback: String = ":\(defaultPort)") throws -> ListenAddress {
        let text = listenAddress ?? configured ?? fallback
        do { return try ListenAddress(parsing: text) } catch {
            throw UsageError(message: "--web.listen-address: \(error.description)")
        }
    }

    /// The web config (TLS, basic auth), or none.
    func webConfig(configured: String?) throws -> WebConfig {
        guard let path = webConfigFile ?? configured else { return WebConfig() }
        do { return try WebConfig.load(path: path) } catch {
            throw UsageError(message: "\(path): \(error.description)")
        }
    }
}

/// An error in what the user gave us (flags, config, web config): printed, exit code 2.
struct UsageError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Runs a command body and maps errors to exit codes: 2 for usage/config errors, 1 otherwise.
func exitOnError(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as UsageError {
        FileHandle.standardError.write(Data("pbs-standby: \(error.message)\n".utf8))
        throw ExitCode(2)
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("pbs-standby: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Keeps glibc from holding on to freed exposition buffers. glibc raises its mmap threshold
/// each time a large mmapped block is freed, so after the first scrapes the 1–2 MB buffers of
/// `/metrics` and `/api/v1/status` come from the heap and stay there fragmented; a fixed
/// threshold returns them to the kernel on free. Measured with `Benchmarks/service-rss.sh`
/// (1000 guests, wrk on /metrics): peak RSS 63–65 MB before, 55–56 MB after, same throughput.
func keepLargeBuffersOffTheHeap() {
    _ = mallopt(M_MMAP_THRESHOLD, 128 * 1024)
}
