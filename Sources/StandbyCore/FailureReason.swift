import ProxmoxModel

/// Why a restore failed: the bounded values of the `reason` label of
/// `pbs_standby_restore_failures_total` (a contract test lists them all).
public enum FailureReason: String, Sendable, CaseIterable, Codable {
    /// The PVE task ended with an error not classified below.
    case taskError = "task_error"
    /// The API refused or failed the call (HTTP 5xx, 400, unreadable answer).
    case apiError = "api_error"
    /// PVE answered 401 or 403: the token is wrong or lacks a privilege (see `permission`).
    case authError = "auth_error"
    /// A local set-up problem: pvesh missing, token file unreadable, bad fingerprint format.
    case configError = "config_error"
    /// Still running after `restore.task_timeout` (left running in PVE).
    case timeout
    /// The restore could not be followed to an end (a pvesh child stopped with the service).
    case interrupted
    /// PVE refused: the target guest is running.
    case refusedRunning = "refused_running"
    /// PVE refused: the target guest's config is locked.
    case refusedLocked = "refused_locked"
    /// PVE refused: the target VMID exists (taken meanwhile; only a restore over our copy uses `force`).
    case refusedNotOwned = "refused_not_owned"
    /// PVE refused: the target guest has `protection: 1`.
    case refusedProtected = "refused_protected"
    /// The task's storage ran out of space (`no space`, `free space` in its exit status).
    case insufficientSpace = "insufficient_space"
    /// A missing privilege or a root-only part of the backup (reference §3.1, §13.1): not retried
    /// on the backoff schedule, the guest waits for a newer backup.
    case permission
    /// `TASK OK`, but the guest does not carry our marker for this backup and VMID.
    case markerMissing = "marker_missing"
    /// The restore could not be recorded in the state file first, so it was not started.
    case stateError = "state_error"
    /// A chunk in the source datastore is corrupt or missing (delta restore).
    case sourceCorrupt = "source_corrupt"
    /// A delta restore's write failed part-way (rolled back to its snapshot, or run again).
    case deltaError = "delta_error"

    /// The reason of a PVE API error. A 403 `Permission check failed …` is `permission`.
    public static func of(_ error: ProxmoxError) -> FailureReason {
        if case .auth(_, 403, let message) = error, message.contains("Permission check failed") { return .permission }
        switch error {
        case .refused(_, let r, _):
            switch r {
            case .locked: return .refusedLocked
            case .running: return .refusedRunning
            case .exists: return .refusedNotOwned
            case .protected: return .refusedProtected
            }
        case .transient, .server, .badRequest, .decoding: return .apiError
        case .auth: return .authError
        case .configuration: return .configError
        }
    }

    /// The reason of a task's exit status. `permission`: the worker's checks on the backed-up
    /// config (§13.1) — `Permission check failed (PATH, PRIV)` (a bridge's `SDN.Use`, `Sys.Modify`
    /// for a privileged CT, `Mapping.Use`) or a root-only part (bind or device mount point, host
    /// PCI/USB device).
    public static func ofTask(_ exit: String) -> FailureReason {
        let t = exit.lowercased()
        if t.contains("permission check failed") || t.contains("only possible for root") || t.contains("only root can") {
            return .permission
        }
        if t.contains("free space") || t.contains("no space") { return .insufficientSpace }
        if t.contains("vm is running") || t.contains("is running") { return .refusedRunning }
        if t.contains("is locked") { return .refusedLocked }
        if t.contains("protection mode") { return .refusedProtected }
        return .taskError
    }
}

/// How a restore attempt ended, as the history keeps it (the `result` of status JSON's
/// `last_restore` and `history`).
public enum RestoreResult: String, Sendable, CaseIterable, Codable {
    /// Recorded before the restore call; still running (re-attached after a restart).
    case running
    /// `TASK OK` (or `TASK WARNINGS: N`) and our marker on the copy.
    case success
    case failure
    /// Not started: the re-check right before acting refused (nothing was changed).
    case skipped
    /// Could not be followed to an end (a pvesh child stopped, or no task found after a restart).
    case interrupted
}
