/// The release version of pbs-standby (semantic versioning).
public let pbsStandbyVersion = "0.1.0"

/// `VERSION (revision REV)`, as `--version` prints it.
public var versionString: String { "\(pbsStandbyVersion) (revision \(gitRevision))" }
