// rpo-bench: standby freshness (RPO) of pbs-standby's scheduling against the old script's policy,
// FIFO, the lower bound and the capacity-aware bound. Discrete-event simulation on virtual time
// driving the real reconciler against the in-process simulator. See README "Performance".
import Foundation
import StandbyCore

var quick = false
var csvPath = "rpo-bench.csv"
var only: Set<String>? = nil
/// `--listing-max SECONDS`: restore.listing_max_interval (60 = list every pass, the old cadence).
var listingMax: Int64 = 300
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--quick": quick = true
    case "--csv": csvPath = args.popFirst() ?? csvPath
    case "--workload": only = Set((args.popFirst() ?? "").split(separator: ",").map(String.init))
    case "--listing-max": listingMax = Int64(args.popFirst() ?? "") ?? listingMax
    case "--verify-mib-per-s": DeltaWorkload.verifyBytesPerSecond = (Double(args.popFirst() ?? "") ?? 1000) * 1_048_576
    default:
        FileHandle.standardError.write(Data("usage: rpo-bench [--quick] [--csv FILE] [--workload a,b,c,d] [--listing-max SECONDS] [--verify-mib-per-s N]\n".utf8))
        exit(2)
    }
}

let start = 1_795_000_000.0
let warmup = 86400.0
let days = quick ? 0.5 : 7.0
let workloads = [Workload.a(), Workload.b(), Workload.c(), DeltaWorkload.workload()].filter { only?.contains($0.name) ?? true }
var results: [Result] = []
for w in workloads where w.name == "d" {
    // Full-only (PVE's restore of 500 GiB) against delta restores, each ÷ its own lower bound.
    let scenario = DeltaWorkload.scenario(w, start: start)
    let backup = w.guests.map { DeltaWorkload.backupSeconds($0, w) }
    let fullBounds = (DeltaWorkload.lowerFull(w), Bounds.capacityAware(w, restore: w.guests.map { Double($0.size) / w.workerBytesPerSecond }, backup: backup))
    let deltaBounds = (DeltaWorkload.lowerDelta(w), Bounds.capacityAware(w, restore: w.guests.map {
        DeltaWorkload.deltaSeconds(DeltaWorkload.changeRate * Double($0.size), writeBytesPerSecond: w.workerBytesPerSecond) }, backup: backup))
    results.append(try await runReconciler(w, policyName: "full-only", policy: SchedulingPolicy.order, listingMax: listingMax, start: start,
                                           warmup: warmup, days: days, scenario: scenario, delta: false, bounds: fullBounds))
    results.append(try await runReconciler(w, policyName: "delta", policy: SchedulingPolicy.order, listingMax: listingMax, start: start,
                                           warmup: warmup, days: days, scenario: scenario, delta: true, bounds: deltaBounds))
}
for w in workloads where w.name != "d" {
    results.append(runOldScript(w, start: start, warmup: warmup, days: days))
    results.append(try await runReconciler(w, policyName: "fifo", policy: fifoPolicy, listingMax: listingMax, start: start, warmup: warmup, days: days))
    results.append(try await runReconciler(w, policyName: "pbs-standby", policy: SchedulingPolicy.order, listingMax: listingMax, start: start, warmup: warmup, days: days))
}

func h(_ s: Double) -> String { String(format: "%.2f", s / 3600) }
print("simulated: \(Int(days * 24)) h measured after \(Int(warmup / 3600)) h of warm-up; ages in hours\n")
print("workload policy       mean   p95    max    no_copy  restores redundant  TiB_restored  prio_mean prio_max  lower  cap    mean/lower mean/cap wall_s  listings_h")
var csv = "workload,policy,mean_age_s,p95_age_s,max_age_s,without_copy_fraction,restores,redundant,bytes_restored,prio_mean_age_s,prio_max_age_s,lower_bound_s,cap_bound_s,wall_s,listings_per_hour\n"
for r in results {
    print(String(format: "%-8@ %-12@ %6@ %6@ %6@ %7.4f  %8d %9d  %12.2f  %9@ %8@ %6@ %6@ %10.3f %8.3f %6.1f  %9@",
                 r.workload as NSString, r.policy as NSString, h(r.meanAge) as NSString, h(r.p95Age) as NSString, h(r.maxAge) as NSString,
                 r.withoutCopyFraction, r.restores, r.redundant, r.bytesRestored / 1_099_511_627_776,
                 h(r.prioMean) as NSString, h(r.prioMax) as NSString, h(r.lowerBound) as NSString, h(r.capBound) as NSString,
                 r.meanAge / r.lowerBound, r.meanAge / r.capBound, r.wallSeconds,
                 (r.listingsPerHour.map { String(format: "%.1f", $0) } ?? "-") as NSString))
    csv += "\(r.workload),\(r.policy),\(r.meanAge),\(r.p95Age),\(r.maxAge),\(r.withoutCopyFraction),\(r.restores),\(r.redundant),\(r.bytesRestored),\(r.prioMean),\(r.prioMax),\(r.lowerBound),\(r.capBound),\(r.wallSeconds),\(r.listingsPerHour.map { "\($0)" } ?? "")\n"
}
try csv.write(toFile: csvPath, atomically: true, encoding: .utf8)
print("\nCSV: \(csvPath)\n")
for r in results {
    print(String(format: "rpo workload=%@ policy=%@ mean_age_ratio=%.2f cap_ratio=%.2f p95_age_h=%@ max_age_h=%@ prio_max_age_h=%@ redundant=%d",
                 r.workload as NSString, r.policy as NSString, r.meanAge / r.lowerBound, r.meanAge / r.capBound,
                 h(r.p95Age) as NSString, h(r.maxAge) as NSString, (r.prioMax > 0 ? h(r.prioMax) : "-") as NSString, r.redundant))
}
