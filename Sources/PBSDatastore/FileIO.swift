#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file descriptor, closed on deinit. Positional reads and writes only, so one descriptor
/// can be shared by several threads.
final class FileHandleFD: @unchecked Sendable {
    let fd: Int32
    let path: String

    /// Takes ownership of an open descriptor.
    init(adopting fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// The size in bytes: seeking to the end works for regular files and block devices alike.
    func size() throws(DatastoreError) -> UInt64 {
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else { throw .io(path: path, operation: "lseek", errno: errno) }
        return UInt64(end)
    }

    /// Reads exactly `buffer.count` bytes at `offset` (fewer only at end of file; returns the count).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(DatastoreError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `buffer` at `offset`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(DatastoreError) {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }

    /// Writes `bytes[0..<count]` at `offset`.
    func write(_ bytes: [UInt8], count: Int, at offset: UInt64) throws(DatastoreError) {
        let result: Result<Void, DatastoreError> = bytes.withUnsafeBytes { b in
            Result { () throws(DatastoreError) in try write(UnsafeRawBufferPointer(rebasing: b[0..<count]), at: offset) }
        }
        try result.get()
    }

    /// fsync(2).
    func sync() throws(DatastoreError) {
        guard fsync(fd) == 0 else { throw .io(path: path, operation: "fsync", errno: errno) }
    }

    /// Sets the length of a regular file.
    func truncate(to length: UInt64) throws(DatastoreError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw .io(path: path, operation: "ftruncate", errno: errno) }
    }

    /// Whether the descriptor refers to a regular file.
    func isRegularFile() -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}

/// Opens an operator-named target. Failures that mean "wrong path or permissions" (rather
/// than a failing disk) are ``DatastoreError/targetUnusable(path:errno:)``, a configuration error.
func openTarget(_ path: String, flags: Int32) throws(DatastoreError) -> FileHandleFD {
    let fd = open(path, flags | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw targetError(path, errno) }
    return FileHandleFD(adopting: fd, path: path)
}

/// Classifies an `open` failure on a target.
func targetError(_ path: String, _ code: Int32) -> DatastoreError {
    switch code {
    case ENOENT: .notFound(path: path, what: "target")
    case ENOTDIR, EISDIR, EACCES, EPERM, EROFS, ENAMETOOLONG, ELOOP, ETXTBSY: .targetUnusable(path: path, errno: code)
    default: .io(path: path, operation: "open", errno: code)
    }
}

/// Reads a whole file. A missing file is reported as `nil`; other failures throw.
func readWholeFile(_ path: String, limit: Int) throws(DatastoreError) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        if errno == ENOENT { return nil }
        throw .io(path: path, operation: "open", errno: errno)
    }
    let file = FileHandleFD(adopting: fd, path: path)
    let size = try file.size()
    guard size <= UInt64(limit) else {
        throw .corruptBlob(path: path, reason: "file is \(size) bytes, more than the \(limit) bytes allowed")
    }
    var failure: DatastoreError?
    let bytes = [UInt8](unsafeUninitializedCapacity: Int(size)) { buf, count in
        do throws(DatastoreError) { count = try file.read(into: UnsafeMutableRawBufferPointer(buf), at: 0) } catch {
            failure = error
            count = 0
        }
    }
    if let failure { throw failure }
    return bytes
}

/// Whether `path` exists (any type).
func pathExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
}

/// Whether `path` is a directory.
func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
}
