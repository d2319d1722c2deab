/// The 8-byte magic numbers at the start of every PBS file, and the fixed sizes around them.
///
/// Each magic is the first 8 bytes of SHA-256 of a fixed string; the byte values are copied from
/// proxmox-backup `pbs-datastore/src/file_formats.rs` (3.2.4, commit 4940514b), where they are
/// written in decimal, and re-checked in the tests by hashing the strings.
public enum Magic {
    /// `sha256("Proxmox Backup uncompressed blob v1.0")[0..8]` (`UNCOMPRESSED_BLOB_MAGIC_1_0`).
    public static let uncompressedBlob: [UInt8] = [66, 171, 56, 7, 190, 131, 112, 161]
    /// `sha256("Proxmox Backup zstd compressed blob v1.0")[0..8]` (`COMPRESSED_BLOB_MAGIC_1_0`).
    public static let compressedBlob: [UInt8] = [49, 185, 88, 66, 111, 182, 163, 127]
    /// `sha256("Proxmox Backup encrypted blob v1.0")[0..8]` (`ENCRYPTED_BLOB_MAGIC_1_0`).
    public static let encryptedBlob: [UInt8] = [123, 103, 133, 190, 34, 45, 76, 240]
    /// `sha256("Proxmox Backup zstd compressed encrypted blob v1.0")[0..8]` (`ENCR_COMPR_BLOB_MAGIC_1_0`).
    public static let encryptedCompressedBlob: [UInt8] = [230, 89, 27, 191, 11, 191, 216, 11]
    /// `sha256("Proxmox Backup fixed sized chunk index v1.0")[0..8]` (`FIXED_SIZED_CHUNK_INDEX_1_0`).
    public static let fixedIndex: [UInt8] = [47, 127, 65, 237, 145, 253, 15, 205]
    /// `sha256("Proxmox Backup dynamic sized chunk index v1.0")[0..8]` (`DYNAMIC_SIZED_CHUNK_INDEX_1_0`).
    public static let dynamicIndex: [UInt8] = [28, 145, 78, 165, 25, 186, 179, 205]
}

/// Sizes fixed by the format.
public enum FormatLimits {
    /// `DataBlobHeader` = magic (8) + CRC32 (4) (file_formats.rs).
    public static let blobHeaderSize = 12
    /// `EncryptedDataBlobHeader` = `DataBlobHeader` + IV (16) + tag (16) (file_formats.rs).
    public static let encryptedBlobHeaderSize = 44
    /// `MAX_BLOB_SIZE` in data_blob.rs: the largest plain payload a blob may hold (128 MiB).
    public static let maxBlobSize = 128 * 1024 * 1024
    /// `FixedIndexHeader` is one page (static assert in fixed_index.rs).
    public static let fixedIndexHeaderSize = 4096
    /// The chunk size PVE uses for VM disks (`PROXMOX_BACKUP_DEFAULT_CHUNK_SIZE`, proxmox-backup-qemu).
    public static let defaultChunkSize = 4 * 1024 * 1024
}
