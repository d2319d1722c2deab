import Foundation

/// Activates an LVM-thin volume whose device node is missing (issue 15 "not_raw … activate the
/// volume if needed"): after a node reboot PVE's LVs are inactive until something activates them
/// (they are created with activation skipped), and PVE's API has no call for it. As
/// pve-storage's LvmThinPlugin `$activate_lv` does: `lvchange -ay -K VG/LV` (the path is
/// `/dev/VG/LV`, LVMPlugin `path`). Thin volumes stay active afterwards, as PVE keeps them
/// (LvmThinPlugin `deactivate_volume` returns early for guest volumes). Thick LVM is not
/// activated here (PVE deactivates it after use; its raw volumes cannot be snapshotted anyway).
struct VolumeActivator: Sendable {
    /// The `lvchange` executable (`restore.lvchange_path`).
    let lvchange: String
    /// Where device nodes live (`/dev`; tests use a scratch directory).
    var devRoot = "/dev"

    /// Activates the thin LV behind `path` when its device node is missing; nil when the path now
    /// exists, else why not.
    func activate(path: String, storageType: String) -> String? {
        if FileManager.default.fileExists(atPath: path) { return nil }
        guard storageType == "lvmthin" else { return "\(path) does not exist (an inactive \(storageType) volume is not activated)" }
        let parts = path.hasPrefix(devRoot + "/") ? path.dropFirst(devRoot.count + 1).split(separator: "/").map(String.init) : []
        guard parts.count == 2 else { return "\(path) does not exist and is not an LVM path \(devRoot)/VG/LV" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lvchange)
        p.arguments = ["-ay", "-K", "\(parts[0])/\(parts[1])"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { return "cannot run \(lvchange): \(error)" }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return "activating LV '\(parts[0])/\(parts[1])' failed (\(p.terminationStatus)): \(text)" }
        return FileManager.default.fileExists(atPath: path) ? nil : "\(path) is still missing after activating it"
    }
}
