/// Which chunks of an image must be written to turn one snapshot's image into another's.
public struct DeltaPlan: Sendable {
    /// The image the target is assumed to hold; nil for a full restore.
    public let from: FixedIndex?
    /// The image to produce.
    public let to: FixedIndex
    /// 0-based chunk indexes to write, ascending.
    public let changed: [Int]

    /// The chunks whose digest differs between `from` and `to`.
    ///
    /// Both indexes must have the same chunk size and the same image size: a resized disk is
    /// not patched in place (the caller restores it in full instead).
    /// - Throws: ``DatastoreError/incompatibleIndexes(_:)`` (a data error, exit 3).
    public static func diff(from: FixedIndex, to: FixedIndex) throws(DatastoreError) -> DeltaPlan {
        guard from.chunkSize == to.chunkSize else {
            throw .incompatibleIndexes(
                "chunk sizes differ: \(from.path) has \(from.chunkSize)-byte chunks, \(to.path) has \(to.chunkSize)-byte chunks")
        }
        guard from.size == to.size else {
            throw .incompatibleIndexes(
                "image sizes differ: \(from.path) is \(from.size) bytes, \(to.path) is \(to.size) bytes "
                    + "(the disk was resized; restore it in full)")
        }
        let changed = (0..<to.chunkCount).filter { from.digests[$0] != to.digests[$0] }
        return DeltaPlan(from: from, to: to, changed: changed)
    }

    /// Every chunk of `to`: a full restore.
    public static func full(_ to: FixedIndex) -> DeltaPlan {
        DeltaPlan(from: nil, to: to, changed: Array(0..<to.chunkCount))
    }

    /// The bytes the plan writes (zero chunks included).
    public var changedBytes: UInt64 {
        changed.reduce(0) { $0 + UInt64(to.length(ofChunk: $1)) }
    }
}
