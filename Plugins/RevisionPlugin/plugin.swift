import Foundation
import PackagePlugin

/// Writes the git revision of the package into a Swift file before each build, so
/// `pbs-standby --version` and `pbs_standby_build_info` name the exact commit.
/// Outside a git checkout (a source tarball) the revision is "unknown".
@main
struct RevisionPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Revision.swift")
        let package = context.package.directoryURL.path
        let script = """
            rev=$(git -C '\(package)' rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            new="/// The git revision this binary was built from.\\npublic let gitRevision = \\"$rev\\"\\n"
            if [ ! -f '\(output.path)' ] || [ "$(cat '\(output.path)')" != "$(printf "$new")" ]; then
              printf "$new" > '\(output.path)'
            fi
            """
        return [.prebuildCommand(
            displayName: "git revision for BuildInfo",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", script],
            outputFilesDirectory: context.pluginWorkDirectoryURL)]
    }
}
