import Foundation
import ProxmoxAPI
import StandbyCore

#if canImport(Glibc)
import Glibc
#endif

/// Finds the datastore directory of sources without `datastore_path` when their PBS runs on the
/// standby itself (issue 15, "Configuration"): the PBS storage's `server` (`GET /storage?type=pbs`)
/// is this node, and `/etc/proxmox-backup/datastore.cfg` names the datastore's `path`.
public enum DatastoreDetection {
    /// The config with the detected paths filled in, and one line per source saying what was found.
    public static func resolve(_ config: StandbyConfig, client: ProxmoxClient,
                               datastoreCfg: String = "/etc/proxmox-backup/datastore.cfg",
                               localNames: Set<String>? = nil) async -> (StandbyConfig, [String]) {
        var c = config, notes: [String] = []
        let pending = config.sources.indices.filter { config.sources[$0].datastorePath == nil && config.sources[$0].delta != .off }
        guard !pending.isEmpty else { return (c, []) }
        let storages: [PBSStorageConfig]
        do { storages = try await client.pbsStorageConfigs() } catch {
            return (c, ["datastore detection: the PBS storages' config cannot be read (GET /storage?type=pbs: \(error)); set sources[].datastore_path for delta restores"])
        }
        let local = localNames ?? Self.localNames(node: config.proxmox.node)
        let text = try? String(contentsOfFile: datastoreCfg, encoding: .utf8)
        let paths = text.map(Self.parse) ?? [:]
        for i in pending {
            let id = config.sources[i].storage
            guard let s = storages.first(where: { $0.storage == id }) else { notes.append("datastore detection: \(id): not a pbs storage in GET /storage"); continue }
            let host = s.server.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
            guard local.contains(host) else {
                notes.append("datastore detection: \(id): PBS server \(s.server) is not this node; delta restores need sources[].datastore_path (a read-only mount of the datastore)")
                continue
            }
            guard text != nil else { notes.append("datastore detection: \(id): \(datastoreCfg) cannot be read"); continue }
            guard let path = paths[s.datastore] else { notes.append("datastore detection: \(id): datastore '\(s.datastore)' is not in \(datastoreCfg)"); continue }
            c.sources[i].datastorePath = path
            if c.sources[i].datastoreNamespace.isEmpty { c.sources[i].datastoreNamespace = s.namespace }
            notes.append("datastore detection: \(id): datastore '\(s.datastore)' at \(path)\(s.namespace.isEmpty ? "" : ", namespace \(s.namespace)") (PBS on this node)")
        }
        return (c, notes)
    }

    /// Datastore name → directory from a `datastore.cfg` (PBS section config: `datastore: NAME`,
    /// then indented `key value` lines; pbs-api-types `DataStoreConfig`): `path`, or
    /// `/mnt/datastore/NAME` for a removable datastore (`backing-device`, `absolute_path()`).
    /// Left out: S3-backed datastores (`backend type=s3`: `path` is only a local cache, the
    /// chunks are in the bucket) and those in `maintenance-mode type=offline`.
    public static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var name: String?, path: String?, removable = false, unusable = false
        func flush() {
            if let name, !unusable { out[name] = removable ? "/mnt/datastore/\(name)" : path }
            name = nil; path = nil; removable = false; unusable = false
        }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            if line.hasPrefix("datastore:") {
                flush()
                name = line.dropFirst("datastore:".count).trimmingCharacters(in: .whitespaces)
            } else if line.first == " " || line.first == "\t" {
                let kv = line.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1).map(String.init)
                guard kv.count == 2, name != nil else { continue }
                if kv[0] == "path" { path = kv[1].trimmingCharacters(in: .whitespaces) }
                if kv[0] == "backing-device" { removable = true }
                if kv[0] == "backend", kv[1].contains("type=s3") { unusable = true }
                if kv[0] == "maintenance-mode", kv[1].contains("type=offline") { unusable = true }
            } else if !line.trimmingCharacters(in: .whitespaces).isEmpty && !line.hasPrefix("#") {
                flush()
            }
        }
        flush()
        return out.filter { !$0.value.isEmpty }
    }

    /// Names under which this node reaches itself: loopback, the node and host name, and the
    /// addresses of its interfaces.
    static func localNames(node: String) -> Set<String> {
        var names: Set<String> = ["127.0.0.1", "::1", "localhost", node.lowercased(), ProcessInfo.processInfo.hostName.lowercased()]
        var list: UnsafeMutablePointer<ifaddrs>?
        if getifaddrs(&list) == 0 {
            var p = list
            while let a = p {
                if let sa = a.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) || sa.pointee.sa_family == sa_family_t(AF_INET6) {
                    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                    let len = socklen_t(sa.pointee.sa_family == sa_family_t(AF_INET) ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
                    if getnameinfo(sa, len, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 {
                        names.insert(String(cString: host).split(separator: "%").first.map(String.init)?.lowercased() ?? "")
                    }
                }
                p = a.pointee.ifa_next
            }
            freeifaddrs(list)
        }
        names.remove("")
        return names
    }
}
