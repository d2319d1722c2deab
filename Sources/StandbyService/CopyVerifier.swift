import Foundation
import PBSDatastore
import ProxmoxAPI
import StandbyCore

/// `pbs-standby verify`: hashes every chunk of each disk of a guest's copy against the index of
/// the backup its marker says it holds (issue 15, "Verify in service"). Reads only: the copy's
/// config and volumes through PVE, the index from the datastore or the copy kept by the service.
public struct CopyVerifier: Sendable {
    let operations: GuestOperations

    /// A verifier over the operations' PVE, state and config.
    public init(operations: GuestOperations) { self.operations = operations }

    /// One disk's result.
    public struct Disk: Sendable, Equatable {
        /// `scsi0`.
        public var drive: String
        /// `local-lvm:vm-101-disk-0`.
        public var volume: String
        /// Chunks compared.
        public var chunks: Int
        /// 0-based indexes of the chunks that differ.
        public var mismatches: [Int]
    }

    /// One guest's result.
    public enum Result: Sendable, Equatable {
        /// Every disk compared: the backup the copy holds and each disk's result.
        case compared(volid: String, vmid: Int, disks: [Disk])
        /// Not comparable: why (no copy, no datastore, a delta rewriting it, a disk without path…).
        case notVerifiable(String)
        /// A data error in the datastore (corrupt index, unreadable volume).
        case dataError(String)

        /// Whether every chunk matched.
        public var matches: Bool {
            if case .compared(_, _, let disks) = self { return disks.allSatisfy { $0.mismatches.isEmpty } }
            return false
        }
    }

    /// Verifies the proven copy of `key`.
    public func verify(_ key: GuestKey) async -> Result {
        let config = operations.config, client = operations.client, node = config.proxmox.node
        guard let source = config.sources.first(where: { $0.storage == key.source }) else { return .notVerifiable("no source \(key.source)") }
        guard let dsPath = source.datastorePath else { return .notVerifiable("no datastore_path for source \(key.source)") }
        let copy: GuestOperations.ProvenCopy?
        do { copy = try await operations.provenCopy(of: key) } catch { return .notVerifiable("PVE: \(error)") }
        guard let copy else { return .notVerifiable("no copy proven ours in PVE") }
        guard copy.slot.type == .vm else { return .notVerifiable("a container (only VM disks are fixed indexes)") }
        if let rewriting = copy.marker.rewriting { return .notVerifiable("a delta restore is rewriting it into \(rewriting)") }
        let volid = copy.marker.volid
        let datastore: Datastore, snapshot: SnapshotRef
        do {
            datastore = try Datastore(path: dsPath)
            snapshot = try SnapshotRef(parsing: volid.snapshot, namespace: source.datastoreNamespace)
        } catch { return .notVerifiable("\(error)") }
        let cfg: GuestConfig
        do { cfg = try await client.guestConfig(node: node, type: .vm, vmid: copy.slot.target) } catch { return .notVerifiable("PVE: \(error)") }
        let keeper = IndexKeeper(statePath: config.statePath)
        var disks: [Disk] = []
        for (drive, volume) in DeltaEligibility.drives(cfg.raw).sorted(by: { $0.key < $1.key }) {
            let archive = "drive-\(drive).img.fidx"
            guard let (index, _) = keeper.lookup(key, volid, archive: archive, datastore: datastore, snapshot: snapshot) else {
                return .notVerifiable("the index \(archive) of \(volid) is neither in \(dsPath) nor kept")
            }
            let info: VolumeInfo
            do { info = try await client.volumeInfo(node: node, volume: volume) } catch { return .notVerifiable("\(volume): \(error)") }
            guard info.format == "raw", let path = info.path else { return .notVerifiable("\(volume) is not a raw volume with a path") }
            do {
                let bad = try ImageVerifier.mismatches(of: index, target: path)
                disks.append(Disk(drive: drive, volume: volume, chunks: index.chunkCount, mismatches: bad))
            } catch { return .dataError("\(volume): \(error)") }
        }
        return .compared(volid: volid.description, vmid: copy.slot.target, disks: disks)
    }
}
