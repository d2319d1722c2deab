/// A PBS datastore directory: `<root>/.chunks/XXXX/<digest>` plus `[ns/<n>/…]<type>/<id>/<time>/`
/// snapshot directories (pbs-datastore/src/datastore.rs, chunk_store.rs; docs/storage.rst).
public struct Datastore: Sendable {
    /// The datastore root.
    public let path: String
    /// The chunk store below it.
    public let chunks: ChunkStore

    /// Opens the datastore at `path`.
    /// - Throws: ``DatastoreError/notFound(path:what:)`` when `path` or its `.chunks` is not a directory.
    public init(path: String) throws(DatastoreError) {
        var root = path
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        guard isDirectory(root) else { throw .notFound(path: root, what: "datastore directory") }
        guard isDirectory(root + "/.chunks") else { throw .notFound(path: root + "/.chunks", what: "chunk store") }
        self.path = root
        chunks = ChunkStore(directory: root + "/.chunks")
    }

    /// The absolute directory of `snapshot`.
    public func directory(of snapshot: SnapshotRef) -> String {
        path + "/" + snapshot.relativePath
    }

    /// Opens archive `archive` (a `.fidx` name) of `snapshot` and checks it: the index itself
    /// (``FixedIndex/init(path:)``) and, when the snapshot has a manifest, the index's size and
    /// checksum against the manifest's entry (``Manifest/verify(_:archive:manifestPath:)``).
    ///
    /// - Throws: ``DatastoreError/dynamicIndexUnsupported(path:)`` for a `.didx` name,
    ///   ``DatastoreError/invalidArgument(_:)`` for any other name, ``DatastoreError/notFound(path:what:)``
    ///   for a missing snapshot or archive, data errors for a corrupt or mismatching index.
    public func openFixedIndex(snapshot: SnapshotRef, archive: String) throws(DatastoreError) -> FixedIndex {
        try Self.checkArchiveName(archive)
        let dir = directory(of: snapshot)
        guard isDirectory(dir) else { throw .notFound(path: dir, what: "snapshot \(snapshot)") }
        let index = try FixedIndex(path: dir + "/" + archive)
        if let manifest = try Manifest.load(snapshotDirectory: dir) {
            try manifest.verify(index, archive: archive, manifestPath: dir + "/" + Manifest.fileName)
        }
        return index
    }

    /// Whether `snapshot` has a manifest (`index.json.blob`).
    public func hasManifest(_ snapshot: SnapshotRef) -> Bool {
        pathExists(directory(of: snapshot) + "/" + Manifest.fileName)
    }

    /// Accepts `<name>.fidx` where name is a plain file name; `.didx` is refused as unsupported.
    public static func checkArchiveName(_ archive: String) throws(DatastoreError) {
        if archive.hasSuffix(".didx") { throw .dynamicIndexUnsupported(path: archive) }
        guard archive.hasSuffix(".fidx"), archive.count > 5, !archive.contains("/"), !archive.hasPrefix(".") else {
            throw .invalidArgument("archive '\(archive)': expected the name of a fixed index, e.g. drive-scsi0.img.fidx")
        }
    }
}
