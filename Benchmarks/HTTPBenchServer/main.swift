// http-bench-server: the real MetricsEndpoint and HTTP server with a synthetic registry of
// `--bytes` worth of labelled series, for wrk. Used by Benchmarks/http-bench.sh.
import Foundation
import Logging
import MicroHTTP
import Prometheus
import StandbyService

var targetBytes = 50_000
var port: UInt16 = 18300
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--bytes": targetBytes = Int(args.popFirst() ?? "") ?? targetBytes
    case "--port": port = UInt16(args.popFirst() ?? "") ?? port
    default: FileHandle.standardError.write(Data("unknown argument \(a)\n".utf8)); exit(2)
    }
}

let metrics = MetricsEndpoint()
var n = 0
while metrics.registry.emitToBuffer().count < targetBytes {
    for i in n..<(n + 50) {
        metrics.registry.makeGauge(
            descriptor: .init(namespace: "pbs_standby", metricName: "restore_lag", unitName: "seconds", helpText: "Lag."),
            labels: [("source", "pbs-prod"), ("vmid", "\(100 + i)"), ("type", i % 3 == 0 ? "ct" : "vm")]
        ).set(Double(i * 37))
    }
    n += 50
}
let server = HTTPServer(configuration: .init(address: .init(host: "127.0.0.1", port: port)),
                        router: WebApp(metrics: metrics).router())
try server.start()
FileHandle.standardOutput.write(Data("serving \(metrics.body().count) bytes (\(n) series) on 127.0.0.1:\(server.port)/metrics\n".utf8))
signal(SIGTERM, SIG_DFL)
while true { sleep(3600) }
