/// PVE's permission paths and the parts of a backed-up guest config that a restore checks
/// (reference §3.1, §3.2, §13.1): what `check-config --probe` needs to say, before anything is
/// restored, what PVE would refuse and why.

extension ProxmoxClient {
    /// `GET /access/permissions` (reference §13.1): the caller's effective privileges per path, as
    /// PVE computes them for this token (a privilege-separated token: the intersection with its
    /// user's). PVE lists its top-level paths (`/`, `/vms`, `/storage`, `/sdn`, …) and every path
    /// with an ACL, each as `{priv: propagate}` — 1 when the privilege also holds below the path,
    /// 0 when it holds at that path only (an ACL set with `--propagate 0`) — leaving out paths
    /// without any privilege; with `path`, that path only [src: pve-access-control
    /// `RPCEnvironment.pm` `get_effective_permissions`, `compile_acl_path` ("hash mapping privilege
    /// name to propagation flag value"), `API2/AccessControl.pm` `permissions` ("Map of "path" =>
    /// (Map of "privilege" => "propagate boolean")"), read in a public copy, not in the reference].
    /// Look a path up with ``PVEPermissions/privileges(at:in:)``.
    public func permissions(path: String? = nil) async throws(ProxmoxError) -> PVEPermissionMap {
        let apiPath = "/access/permissions"
        let data = try await transport.call(.get, apiPath, parameters: path.map { [("path", $0)] } ?? [])
        guard case .object(let paths) = data else {
            throw .decoding(path: apiPath, field: "data", message: "expected an object of paths")
        }
        var out: [String: [String: Bool]] = [:]
        for (p, v) in paths {
            guard case .object(let privs) = v else {
                throw .decoding(path: apiPath, field: p, message: "expected an object of privileges")
            }
            var flags: [String: Bool] = [:]
            for (priv, flag) in privs {
                // The value is the propagate flag (1/0; Perl may hand over "" for false when a
                // token's flag is and-ed with its user's, `compile_acl_path`). null: not set.
                switch flag {
                case .null: continue
                case .string(let t) where t.isEmpty: flags[priv] = false
                default:
                    guard let b = flag.bool else {
                        throw .decoding(path: apiPath, field: "\(p).\(priv)", message: "expected a propagate flag (0 or 1)")
                    }
                    flags[priv] = b
                }
            }
            out[p] = flags
        }
        return PVEPermissionMap(out)
    }
}
