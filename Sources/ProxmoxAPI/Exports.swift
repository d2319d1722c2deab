// The value types of PVE's API (volids, UPIDs, guests, tasks, errors, backed-up configs,
// permission maps) live in ProxmoxModel, which the engine's pure core uses without this module's
// transports; everything that talks to PVE sees them through here.
@_exported import ProxmoxModel
