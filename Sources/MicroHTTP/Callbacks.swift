import CMicroHTTPD

// libmicrohttpd's C callbacks. They are plain functions in their own file, not closures in
// main.swift: a closure there inherits @MainActor isolation and traps on an MHD thread.

/// The access handler: called once with the headers (answering then would disable
/// keep-alive, so only a body that may not be sent is refused then), then with body chunks,
/// then once more with no data to produce the response.
func mhdAccessHandler(
    _ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
    _ url: UnsafePointer<CChar>?, _ method: UnsafePointer<CChar>?, _ version: UnsafePointer<CChar>?,
    _ uploadData: UnsafePointer<CChar>?, _ uploadDataSize: UnsafeMutablePointer<Int>?,
    _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
) -> MHD_Result {
    guard let cls, let connection, let url, let method, let conCls else { return .NO }
    let context = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()
    guard let raw = conCls.pointee else {
        conCls.pointee = Unmanaged.passRetained(RequestState()).toOpaque()
        context.inFlight.add(1, ordering: .relaxed)
        if let refusal = context.earlyRefusal(
            method: String(cString: method), path: String(cString: url),
            contentLength: lookupHeader(connection, "Content-Length"),
            transferEncoding: lookupHeader(connection, "Transfer-Encoding")) {
            let (response, body) = context.finish(refusal, requestHeaders: [])
            return queue(response, body: body, on: connection)
        }
        return .YES
    }
    let state = Unmanaged<RequestState>.fromOpaque(raw).takeUnretainedValue()
    if let uploadDataSize, uploadDataSize.pointee > 0 {
        let n = uploadDataSize.pointee
        if state.body.count + n > context.maxBodyBytes {
            state.bodyTooLarge = true
            state.body = []
        } else if !state.bodyTooLarge, let uploadData {
            uploadData.withMemoryRebound(to: UInt8.self, capacity: n) {
                state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n))
            }
        }
        uploadDataSize.pointee = 0
        return .YES
    }
    let headers = collectValues(connection, .HEADER_KIND)
    var query: [String: String] = [:]
    for (k, v) in collectValues(connection, .GET_ARGUMENT_KIND) where query[k] == nil { query[k] = v }
    let (response, body) = context.respond(
        method: String(cString: method), path: String(cString: url), state: state,
        client: ClientAddress.key(pbs_mhd_client_address(connection)), headers: headers, query: query)
    return queue(response, body: body, on: connection)
}

/// Called when a request is done (sent, failed or timed out): frees its state.
func mhdRequestCompleted(
    _ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
    _ conCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ code: MHD_RequestTerminationCode
) {
    guard let conCls, let raw = conCls.pointee else { return }
    Unmanaged<RequestState>.fromOpaque(raw).release()
    conCls.pointee = nil
    if let cls {
        Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue().inFlight.subtract(1, ordering: .releasing)
    }
}

/// Hands the body to libmicrohttpd without copying; the body object is released when sent.
private func queue(_ response: HTTPResponse, body: ResponseBody, on connection: OpaquePointer) -> MHD_Result {
    let retained = Unmanaged.passRetained(body)
    guard let mhd = MHD_create_response_from_buffer_with_free_callback_cls(
        body.count, body.storage.baseAddress, releaseBody, retained.toOpaque()) else {
        retained.release()
        return .NO
    }
    defer { MHD_destroy_response(mhd) }
    _ = MHD_add_response_header(mhd, "Content-Type", response.contentType)
    for (name, value) in response.headers {
        _ = MHD_add_response_header(mhd, name, value)
    }
    return MHD_queue_response(connection, UInt32(response.status), mhd)
}

private func releaseBody(_ cls: UnsafeMutableRawPointer?) {
    guard let cls else { return }
    Unmanaged<ResponseBody>.fromOpaque(cls).release()
}

/// One request header's value (the first of that name, case-insensitive); nil when absent.
private func lookupHeader(_ connection: OpaquePointer, _ name: String) -> String? {
    MHD_lookup_connection_value(connection, .HEADER_KIND, name).map { String(cString: $0) }
}

private final class ValueCollector {
    var values: [(name: String, value: String)] = []
}

private func collectValues(_ connection: OpaquePointer, _ kind: MHD_ValueKind) -> [(name: String, value: String)] {
    let collector = ValueCollector()
    let box = Unmanaged.passUnretained(collector)
    _ = MHD_get_connection_values(connection, kind, collectOne, box.toOpaque())
    return collector.values
}

private func collectOne(
    _ cls: UnsafeMutableRawPointer?, _ kind: MHD_ValueKind,
    _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?
) -> MHD_Result {
    guard let cls, let key else { return .YES }
    let collector = Unmanaged<ValueCollector>.fromOpaque(cls).takeUnretainedValue()
    collector.values.append((String(cString: key), value.map { String(cString: $0) } ?? ""))
    return .YES
}
