import Foundation
import Testing

@Suite("Monitoring contract: alerts, dashboard, exposition, real Prometheus", .serialized)
struct MonitoringTests {
    @Test func promtoolChecksAndUnitTestsOfTheRules() throws {
        let (rc, out) = try tool("/usr/bin/promtool", ["check", "rules", packageRoot.appendingPathComponent("alerts/pbs-standby.rules.yml").path])
        #expect(rc == 0, "\(out)")
        for file in ["pbs-standby.test.yml", "drills.test.yml"] {
            let (rc2, out2) = try tool("/usr/bin/promtool", ["test", "rules", packageRoot.appendingPathComponent("alerts/tests/\(file)").path])
            #expect(rc2 == 0, "\(file): \(out2)")
        }
        // Every alert of METRICS.md exists, with a runbook section in the README.
        let rules = try String(contentsOf: packageRoot.appendingPathComponent("alerts/pbs-standby.rules.yml"), encoding: .utf8)
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for alert in ["PbsStandbyDown", "PbsStandbyLoopStalled", "PbsStandbySourceDown", "PbsStandbyGuestStale",
                      "PbsStandbyRestoreFailing", "PbsStandbyGuestBlocked", "PbsStandbyNoNewBackups", "PbsStandbyFailedOver",
                      "PbsStandbyStateNotWritable", "PbsStandbyDrillFailed", "PbsStandbyDrillOverdue", "PbsStandbyFailoverCapacityShort"] {
            #expect(rules.contains("alert: \(alert)\n"))
            #expect(readme.contains("<a id=\"alert-\(alert.lowercased())\"></a>"), "README runbook for \(alert)")
        }
    }

    @Test func everyMetricUsedIsEmittedAndTheExpositionIsValid() async throws {
        let demo = try DemoProcess()
        defer { demo.stop() }
        #expect(try await demo.waitFor(seconds: 30) { $0.contains("\"result\":\"failure\"") && $0.contains("\"result\":\"success\"") })
        // The drill families appear once a drill ended (`"result":"failed"` is a drill's: a restore
        // that failed is `"failure"`).
        #expect(try await demo.waitFor(seconds: 90) { $0.contains("\"evidence\":\"agent\"") && $0.contains("\"result\":\"failed\"") })
        let text = try #require(curl(demo.base + "/metrics"))
        let (rc, out) = try tool("/usr/bin/promtool", ["check", "metrics"], stdin: text)
        #expect(rc == 0, "\(out)")
        for name in try metricNamesUsed() {
            #expect(text.contains("\n\(name){") || text.contains("\n\(name) "), "\(name) is used by alerts/dashboard but not emitted")
        }
    }

    @Test func statusMatchesTheJSONSchema() async throws {
        let demo = try DemoProcess()
        defer { demo.stop() }
        #expect(try await demo.waitFor(seconds: 30) { $0.contains("\"result\":\"success\"") })
        let body = try #require(curl(demo.base + "/api/v1/status"))
        let guest = try #require(curl(demo.base + "/api/v1/guests/101"))
        let script = """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[1]))
            jsonschema.validate(json.loads(sys.argv[2]), schema)
            jsonschema.validate(json.loads(sys.argv[3]), schema["$defs"]["guest"] | {"$defs": schema["$defs"]})
            print("valid")
            """
        let (rc, out) = try tool("/usr/bin/env", ["python3", "-c", script,
                                                 packageRoot.appendingPathComponent("deploy/api/status.schema.json").path, body, guest])
        #expect(rc == 0 && out.contains("valid"), "\(out)")
        #expect(curl(demo.base + "/api/v1/guests/424242") == nil, "unknown guest is 404")
        // The drill report's JSON against its schema, once a drill ended.
        #expect(try await demo.waitFor(seconds: 90) { $0.contains("\"evidence\":\"agent\"") })
        let drills = try #require(curl(demo.base + "/api/v1/drills"))
        let (rc2, out2) = try tool("/usr/bin/env", ["python3", "-c", """
            import json, sys, jsonschema
            doc = json.loads(sys.argv[2])
            jsonschema.validate(doc, json.load(open(sys.argv[1])))
            assert any(g["drill"]["result"] == "passed" for g in doc["guests"]), doc
            print("valid")
            """, packageRoot.appendingPathComponent("deploy/api/drills.schema.json").path, drills])
        #expect(rc2 == 0 && out2.contains("valid"), "\(out2)")
    }

    /// Debian's headless Chromium renders the page; the screenshot is not blank and the DOM has a row per guest.
    @Test func statusPageInChromium() async throws {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let browser = try #require(chromium, "chromium is installed by `make test`")
        let demo = try DemoProcess()
        defer { demo.stop() }
        #expect(try await demo.waitFor(seconds: 30) { $0.contains("\"result\":\"success\"") })
        let shot = FileManager.default.temporaryDirectory.appendingPathComponent("page-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: shot) }
        let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]
        let (_, dom) = try tool(browser, flags + ["--dump-dom", demo.base + "/"])
        #expect(dom.components(separatedBy: "<tr class=\"guest\">").count - 1 == 12, "one row per guest")
        _ = try tool(browser, flags + ["--screenshot=\(shot.path)", demo.base + "/"])
        let check = """
            import sys, zlib, struct
            data = open(sys.argv[1], 'rb').read()
            assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
            pos, idat, w, h = 8, b'', 0, 0
            while pos < len(data):
                n, kind = struct.unpack('>I4s', data[pos:pos+8]); body = data[pos+8:pos+8+n]; pos += 12 + n
                if kind == b'IHDR': w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
                if kind == b'IDAT': idat += body
            raw = zlib.decompress(idat)
            distinct = len(set(raw[i:i+3] for i in range(0, min(len(raw), 4_000_000), 7)))
            print(w, h, distinct)
            assert distinct > 20, 'blank screenshot'
            """
        let (rc, out) = try tool("/usr/bin/env", ["python3", "-c", check, shot.path])
        #expect(rc == 0, "\(out)")
        // The drill report: one row per guest drills apply to (the demo's 12), once drills ran.
        #expect(try await demo.waitFor(seconds: 90) { $0.contains("\"evidence\":\"agent\"") && $0.contains("\"result\":\"failed\"") })
        let (_, report) = try tool(browser, flags + ["--dump-dom", demo.base + "/drills"])
        #expect(report.components(separatedBy: "<tr class=\"drill\">").count - 1 == 12, "one row per guest: \(report.prefix(2000))")
        #expect(report.contains("guest agent answered") && report.contains(">passed<") && report.contains(">failed<"), "evidence shown")
    }

    /// A real Prometheus scrapes the demo with the shipped rules: every dashboard query returns
    /// data and PbsStandbyRestoreFailing fires for the guest whose restores keep failing.
    /// (`for:` durations are shortened in a copy of the rules; promtool tests cover them exactly.)
    @Test func realPrometheusScrapingTheDemo() async throws {
        let demo = try DemoProcess()
        defer { demo.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var rules = try String(contentsOf: packageRoot.appendingPathComponent("alerts/pbs-standby.rules.yml"), encoding: .utf8)
        rules = rules.replacingOccurrences(of: #"for: \d+m"#, with: "for: 1s", options: .regularExpression)
        try rules.write(to: dir.appendingPathComponent("rules.yml"), atomically: true, encoding: .utf8)
        let promPort = Int.random(in: 40001...50000)
        try """
        global: {scrape_interval: 1s, evaluation_interval: 1s}
        rule_files: [rules.yml]
        scrape_configs:
          - job_name: pbs-standby
            static_configs: [{targets: ['127.0.0.1:\(demo.port)']}]
        """.write(to: dir.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        let prom = Process()
        prom.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        prom.arguments = ["--config.file=\(dir.appendingPathComponent("prometheus.yml").path)",
                          "--storage.tsdb.path=\(dir.appendingPathComponent("data").path)",
                          "--web.listen-address=127.0.0.1:\(promPort)"]
        prom.currentDirectoryURL = dir
        prom.standardOutput = FileHandle.nullDevice
        prom.standardError = FileHandle.nullDevice
        try prom.run()
        defer { prom.terminate(); prom.waitUntilExit() }
        let api = "http://127.0.0.1:\(promPort)/api/v1"
        func query(_ q: String) -> Int {
            let enc = q.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? q
            guard let body = curl("\(api)/query?query=\(enc)"),
                  let doc = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let data = doc["data"] as? [String: Any], let result = data["result"] as? [Any] else { return -1 }
            return result.count
        }
        // Poll until data arrives (the first samples show up several seconds after start).
        var ready = false
        for _ in 0..<200 where !ready {
            ready = query("pbs_standby_build_info") > 0
            if !ready { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(ready, "Prometheus scraped the demo")
        // Every dashboard query, with template variables replaced by match-all regexes.
        let dash = try JSONSerialization.jsonObject(with: Data(contentsOf: packageRoot.appendingPathComponent("dashboards/pbs-standby.json"))) as! [String: Any]
        var exprs: [String] = []
        for panel in dash["panels"] as! [[String: Any]] {
            for t in panel["targets"] as! [[String: Any]] { exprs.append(t["expr"] as! String) }
        }
        #expect(exprs.count >= 14)
        var missing = Set(exprs)
        let deadline = Date().addingTimeInterval(90)
        while !missing.isEmpty && Date() < deadline {
            for e in missing {
                let q = e.replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$source", with: ".*")
                    .replacingOccurrences(of: "$__rate_interval", with: "1m")
                if query(q) > 0 { missing.remove(e) }
            }
            if !missing.isEmpty { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(missing.isEmpty, "dashboard queries without data: \(missing)")
        // The demo's guest 106 fails every restore: the alert fires.
        var firing = false
        let alertDeadline = Date().addingTimeInterval(90)
        while !firing && Date() < alertDeadline {
            if let body = curl("\(api)/alerts"), body.contains("\"alertname\":\"PbsStandbyRestoreFailing\""),
               body.contains("\"vmid\":\"106\""), body.contains("\"state\":\"firing\"") { firing = true }
            else { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(firing, "PbsStandbyRestoreFailing fires for guest 106")
        // The demo's copy of 107 does not boot: its drill fails, and the node is short of memory
        // for a failover of every copy.
        func firingAlerts() -> [(name: String, vmid: String?)] {
            guard let body = curl("\(api)/alerts"), let doc = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let data = doc["data"] as? [String: Any], let alerts = data["alerts"] as? [[String: Any]] else { return [] }
            return alerts.compactMap { a in
                guard a["state"] as? String == "firing", let labels = a["labels"] as? [String: String], let name = labels["alertname"] else { return nil }
                return (name, labels["vmid"])
            }
        }
        var drillFailed = false, capacity = false
        let drillDeadline = Date().addingTimeInterval(120)
        while !(drillFailed && capacity) && Date() < drillDeadline {
            let alerts = firingAlerts()
            drillFailed = alerts.contains { $0.name == "PbsStandbyDrillFailed" && $0.vmid == "107" }
            capacity = alerts.contains { $0.name == "PbsStandbyFailoverCapacityShort" }
            if !(drillFailed && capacity) { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(drillFailed, "PbsStandbyDrillFailed fires for guest 107")
        #expect(capacity, "PbsStandbyFailoverCapacityShort fires")
    }
}
