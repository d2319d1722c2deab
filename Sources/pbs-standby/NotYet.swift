import ArgumentParser
import Foundation

/// Says plainly that a command is not implemented yet and exits non-zero (never pretends).
func notImplemented(_ name: String) throws -> Never {
    FileHandle.standardError.write(Data("pbs-standby \(name): not implemented yet\n".utf8))
    throw ExitCode(3)
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the service: keep the standby restored, serve metrics and status.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("run") }
}

struct OnceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "once", abstract: "One pass: plan, restore, wait; exit 0 when every restore succeeded.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("once") }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the state of every guest.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("status") }
}

struct FailoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "failover", abstract: "Freeze restores and start the standby copies.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("failover") }
}

struct HoldCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hold", abstract: "Pause restores of guests.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("hold") }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume restores of held or failed-over guests.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("resume") }
}

struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check-config", abstract: "Validate the configuration and print the effective selection.")
    @OptionGroup var global: GlobalOptions
    func run() async throws { try notImplemented("check-config") }
}
