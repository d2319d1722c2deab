import Foundation
import PBSDatastore
import ProxmoxAPI
import StandbyCore

/// Keeps a copy of the indexes (`*.fidx`, a few KiB per GiB) and the `qemu-server.conf` of the
/// backup each copy holds, so pruning that snapshot on PBS does not force the next restore to be
/// a full one (issue 15). Under `<state directory>/delta-indexes/<source>/<vmid>/<backup time>/`.
struct IndexKeeper: Sendable {
    /// `<state directory>/delta-indexes`.
    let root: String

    /// The keeper next to the state file.
    init(statePath: String) {
        let dir = (statePath as NSString).deletingLastPathComponent
        root = ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent("delta-indexes")
    }

    /// The directory kept for one backup of a guest.
    func directory(_ key: GuestKey, _ volid: Volid) -> String {
        "\(root)/\(key.source)/\(key.vmid)/\(volid.backupTime)"
    }

    /// The kept index of `archive` of `volid`, when there is one.
    func index(_ key: GuestKey, _ volid: Volid, archive: String) -> FixedIndex? {
        try? FixedIndex(path: directory(key, volid) + "/" + archive)
    }

    /// The path of the kept index of `archive` of `volid`.
    func indexPath(_ key: GuestKey, _ volid: Volid, archive: String) -> String {
        directory(key, volid) + "/" + archive
    }

    /// The index of `archive` of the backup `volid` (snapshot `snapshot`): from the datastore, else
    /// the kept copy (then with its path, for `datastore apply --from-index`); nil when neither.
    func lookup(_ key: GuestKey, _ volid: Volid, archive: String, datastore: Datastore, snapshot: SnapshotRef) -> (index: FixedIndex, keptPath: String?)? {
        if let inStore = try? datastore.openFixedIndex(snapshot: snapshot, archive: archive) { return (inStore, nil) }
        guard let kept = index(key, volid, archive: archive) else { return nil }
        return (kept, indexPath(key, volid, archive: archive))
    }

    /// The kept backup config of `volid`, when there is one.
    func config(_ key: GuestKey, _ volid: Volid) -> String? {
        try? String(contentsOfFile: directory(key, volid) + "/qemu-server.conf", encoding: .utf8)
    }

    /// Keeps the indexes and config of `snapshot` as the ones of `volid` (after a good restore of
    /// it) and drops those of other backups of the guest (a delta always starts from the live
    /// copy: with keep_previous the previous copy is removed once the new one is good). Best
    /// effort: a failure only costs a full restore later.
    func keep(_ key: GuestKey, _ volid: Volid, datastore: Datastore, snapshot: SnapshotRef) {
        let fm = FileManager.default, source = datastore.directory(of: snapshot), target = directory(key, volid)
        guard let names = try? fm.contentsOfDirectory(atPath: source) else { return }
        let staging = target + ".tmp"
        try? fm.removeItem(atPath: staging)
        guard (try? fm.createDirectory(atPath: staging, withIntermediateDirectories: true)) != nil else { return }
        for name in names where name.hasSuffix(".fidx") {
            try? fm.copyItem(atPath: source + "/" + name, toPath: staging + "/" + name)
        }
        if let text = BackupConfigReader.config(in: source) {
            try? text.write(toFile: staging + "/qemu-server.conf", atomically: true, encoding: .utf8)
        }
        try? fm.removeItem(atPath: target)
        try? fm.moveItem(atPath: staging, toPath: target)
        let guestDir = "\(root)/\(key.source)/\(key.vmid)"
        for name in (try? fm.contentsOfDirectory(atPath: guestDir)) ?? [] where name != String(volid.backupTime) {
            try? fm.removeItem(atPath: guestDir + "/" + name)
        }
    }
}

/// Reads a VM backup's `qemu-server.conf` from its snapshot directory (`qemu-server.conf.blob`,
/// a data blob: reference §3.3, §9.2).
enum BackupConfigReader {
    /// The config text, nil when the blob is missing or unreadable.
    static func config(in snapshotDirectory: String) -> String? {
        let path = snapshotDirectory + "/qemu-server.conf.blob"
        guard let data = FileManager.default.contents(atPath: path), let bytes = try? DataBlob.decode([UInt8](data), path: path) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The config with what is not the guest's own left out: blank lines (PVE's restore rewrites
    /// drive lines from the backup's, so any difference in them, or anywhere else, means PVE's
    /// restore would produce another config than the copy has).
    static func normalized(_ text: String) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}
