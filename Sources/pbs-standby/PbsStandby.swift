import ArgumentParser
import BuildInfo

/// The `pbs-standby` command: keeps a Proxmox VE standby node hot from PBS backups.
@main
struct PbsStandby: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pbs-standby",
        abstract: "Keeps a Proxmox VE standby node hot: restores the newest PBS backup of every selected guest.",
        version: "pbs-standby \(versionString)",
        subcommands: [
            RunCommand.self, OnceCommand.self, DemoCommand.self, SimulatorCommand.self,
            StatusCommand.self, FailoverCommand.self, HoldCommand.self, ResumeCommand.self, AdoptCommand.self,
            DatastoreCommand.self, VerifyCommand.self, DrillCommand.self,
            CheckConfigCommand.self,
        ])
}
