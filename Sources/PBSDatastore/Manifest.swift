import Foundation

/// A snapshot's manifest, `index.json.blob`: a data blob (never encrypted, zstd when smaller)
/// holding JSON (`BackupManifest` in pbs-datastore/src/manifest.rs). Keys are kebab-case and
/// their order on disk is not relied upon; `unprotected` and `signature` are ignored here.
public struct Manifest: Sendable {
    /// The manifest's file name inside a snapshot directory (`MANIFEST_BLOB_NAME`).
    public static let fileName = "index.json.blob"

    /// One `files[]` entry (`FileInfo` in manifest.rs).
    public struct FileInfo: Sendable, Equatable {
        /// e.g. `drive-scsi0.img.fidx`.
        public let filename: String
        /// `none`, `sign-only` or `encrypt` (missing means `none`, as in manifest.rs).
        public let cryptMode: String
        /// For an index: the image size; for a blob: the raw blob length.
        public let size: UInt64
        /// For an index: its index_csum; for a blob: SHA-256 of the raw blob.
        public let csum: [UInt8]
    }

    /// `backup-type`: vm, ct or host.
    public let backupType: String
    /// `backup-id`.
    public let backupID: String
    /// `backup-time` (epoch seconds).
    public let backupTime: Int64
    /// `files`.
    public let files: [FileInfo]

    /// Parses manifest JSON; `path` names it in errors.
    public init(json: [UInt8], path: String) throws(DatastoreError) {
        let raw: RawManifest
        do { raw = try JSONDecoder().decode(RawManifest.self, from: Data(json)) } catch {
            throw .manifestMismatch(path: path, reason: "not a valid manifest: \(error)")
        }
        var files: [FileInfo] = []
        for f in raw.files {
            guard let csum = ChunkDigest(hex: f.csum) else {
                throw .manifestMismatch(path: path, reason: "csum of \(f.filename) is not 64 hex digits")
            }
            files.append(FileInfo(filename: f.filename, cryptMode: f.cryptMode ?? "none", size: f.size, csum: csum.bytes))
        }
        backupType = raw.backupType
        backupID = raw.backupID
        backupTime = raw.backupTime
        self.files = files
    }

    /// Reads `<snapshotDir>/index.json.blob` (checking the blob's CRC); nil when there is none.
    public static func load(snapshotDirectory: String) throws(DatastoreError) -> Manifest? {
        let path = snapshotDirectory + "/" + fileName
        guard let raw = try readWholeFile(path, limit: FormatLimits.maxBlobSize + 64) else { return nil }
        let json = try DataBlob.decode(raw, path: path)
        return try Manifest(json: json, path: path)
    }

    /// The entry for `filename`, if listed.
    public func file(named filename: String) -> FileInfo? {
        files.first { $0.filename == filename }
    }

    /// Checks `index` against this manifest's entry for `archive`, as `verify_file` in
    /// manifest.rs does with `compute_csum`: same size, and csum = SHA-256 of the digests.
    ///
    /// - Throws: ``DatastoreError/manifestMismatch(path:reason:)`` when the archive is not listed,
    ///   or size or checksum differ; ``DatastoreError/encryptedUnsupported(path:)`` for
    ///   `crypt-mode: encrypt`.
    public func verify(_ index: FixedIndex, archive: String, manifestPath: String) throws(DatastoreError) {
        guard let info = file(named: archive) else {
            throw .manifestMismatch(path: manifestPath, reason: "does not list \(archive)")
        }
        if info.cryptMode == "encrypt" { throw .encryptedUnsupported(path: index.path) }
        guard info.size == index.size else {
            throw .manifestMismatch(path: manifestPath, reason:
                "wrong size for \(archive): manifest says \(info.size) bytes, \(index.path) has \(index.size)")
        }
        let csum = index.computedCsum
        guard info.csum == csum else {
            throw .manifestMismatch(path: manifestPath, reason:
                "wrong index checksum for \(archive): manifest says \(ChunkDigest.hexString(info.csum)), "
                    + "\(index.path) has \(ChunkDigest.hexString(csum))")
        }
    }
}

/// The JSON shape, decoded leniently (unknown keys ignored).
private struct RawManifest: Decodable {
    struct File: Decodable {
        let filename: String
        let cryptMode: String?
        let size: UInt64
        let csum: String
        enum CodingKeys: String, CodingKey {
            case filename, size, csum
            case cryptMode = "crypt-mode"
        }
    }
    let backupType: String
    let backupID: String
    let backupTime: Int64
    let files: [File]
    enum CodingKeys: String, CodingKey {
        case files
        case backupType = "backup-type"
        case backupID = "backup-id"
        case backupTime = "backup-time"
    }
}
