import CZstd

/// zstd decompression of blob payloads. PBS compresses with level 1 and, for unencrypted blobs,
/// streams the frame (`zstd::stream::copy_encode` in pbs-datastore/src/data_blob.rs), so the
/// frame header carries no content size; `ZSTD_decompress` needs only an upper bound.
enum Zstd {
    /// Decompresses every frame in `src` into at most `capacity` bytes.
    /// Returns the data, or libzstd's error name (e.g. when the output would exceed `capacity`).
    static func decompress(_ src: UnsafeRawBufferPointer, capacity: Int) -> Result<[UInt8], ZstdFailure> {
        var failure: ZstdFailure?
        let out = [UInt8](unsafeUninitializedCapacity: capacity) { buf, count in
            let rc = ZSTD_decompress(buf.baseAddress, capacity, src.baseAddress, src.count)
            if ZSTD_isError(rc) != 0 {
                failure = ZstdFailure(name: String(cString: ZSTD_getErrorName(rc)),
                                      outputTooSmall: ZSTD_getErrorCode(rc) == ZSTD_error_dstSize_tooSmall)
                count = 0
            } else {
                count = rc
            }
        }
        if let failure { return .failure(failure) }
        return .success(out)
    }

    /// Decompresses a payload of unknown plain size, up to `limit` bytes (growing the buffer).
    static func decompress(_ src: UnsafeRawBufferPointer, limit: Int) -> Result<[UInt8], ZstdFailure> {
        let declared = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        // UInt64.max = ZSTD_CONTENTSIZE_UNKNOWN, UInt64.max - 1 = ZSTD_CONTENTSIZE_ERROR (zstd.h).
        var capacity = declared < UInt64.max - 1 ? Int(min(declared, UInt64(limit))) : min(1 << 20, limit)
        while true {
            let result = decompress(src, capacity: capacity)
            guard case .failure(let f) = result, f.outputTooSmall, capacity < limit else { return result }
            capacity = min(capacity * 4, limit)
        }
    }
}

/// A libzstd error.
struct ZstdFailure: Error {
    /// `ZSTD_getErrorName`.
    let name: String
    /// The plain data is larger than the buffer offered.
    let outputTooSmall: Bool
}
