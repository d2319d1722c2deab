import ArgumentParser
import Foundation
import StandbyService

/// `verify`: every chunk of each disk of the copies against the index of the backup they hold.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Hash every chunk of guests' copies against the backup each holds (VM disks, sources with a datastore_path).",
        discussion: "Exit 0: every chunk matches; 1: a mismatch, or a copy that cannot be verified; 2: usage or configuration error; 3: a data error in the datastore or a volume.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Guests: backed-up VMIDs, target VMIDs, or SOURCE:VMID.") var guests: [String]

    func run() async throws {
        try await exitOnError {
            let ctx = try await GuestCommandContext(global, guests)
            let config = await detectDatastores(ctx.config, transport: ctx.operations.client.transport)
            let verifier = CopyVerifier(operations: GuestOperations(config: config, client: ctx.operations.client, store: ctx.store))
            var code: Int32 = 0
            for m in ctx.matches {
                switch await verifier.verify(m.key) {
                case .compared(let volid, let vmid, let disks):
                    for d in disks {
                        let verdict = d.mismatches.isEmpty ? "ok" : "MISMATCH in \(d.mismatches.count) chunks: " + d.mismatches.map(String.init).joined(separator: " ")
                        print("\(m.key) \(vmid) \(d.drive) \(d.volume) \(volid): \(d.chunks) chunks, \(verdict)")
                        if !d.mismatches.isEmpty { code = max(code, 1) }
                    }
                case .notVerifiable(let why):
                    print("\(m.key): not verified: \(why)")
                    code = max(code, 1)
                case .dataError(let why):
                    print("\(m.key): data error: \(why)")
                    code = 3
                }
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
