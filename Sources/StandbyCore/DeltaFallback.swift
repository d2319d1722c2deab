/// Why a delta restore was not possible and PVE restored the guest in full (label `reason` of
/// `pbs_standby_delta_fallbacks_total`; listed in the README). Issue 15, "Eligibility".
public enum DeltaFallback: String, Sendable, CaseIterable, Codable {
    /// A container: its archives are dynamic indexes (`.didx`), restored by PVE.
    case notVM = "not_vm"
    /// The backup is encrypted (the chunks cannot be read without the key).
    case encrypted
    /// No datastore directory is known for the source, or it cannot be opened.
    case noDatastore = "no_datastore"
    /// A disk of the copy is not a raw volume the service can open (qcow2, vmdk, no path).
    case notRaw = "not_raw"
    /// The set of disks or their sizes differ between the copy's backup and the new one.
    case layoutChanged = "layout_changed"
    /// The backup's `qemu-server.conf` differs from the one the copy was restored from.
    case configChanged = "config_changed"
    /// A task other than ours ran on the copy after its restore (start, rollback, move, resize…).
    case touchedSinceRestore = "touched_since_restore"
    /// The content guard found a sampled unchanged chunk that differs from the copy's backup.
    case copyModified = "copy_modified"
    /// The index of the backup the copy holds is neither in the datastore nor kept by the service.
    case oldIndexMissing = "old_index_missing"
    /// The new backup's index or a chunk it needs is not (yet) in the datastore.
    case chunkMissing = "chunk_missing"
    /// The copy's storage cannot snapshot it and `delta_without_snapshot` is off.
    case noSnapshot = "no_snapshot"
    /// The target holds no whole copy: its marker names no backup of this guest (the config a
    /// failed forced restore leaves behind, reference §3.1 step 3).
    case noCopy = "no_copy"
}
