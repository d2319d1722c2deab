import ConfigSupport
import ProxmoxModel

/// PVE's VMID range (`pve-vmid`: 100–999999999).
public let vmidRange: ClosedRange<Int> = 100...999_999_999

/// Sorted, disjoint closed intervals of VMIDs; `bounded` is false when a selection cannot be
/// enumerated (everything, or a glob with `*`): such a set is treated as all of ``vmidRange``
/// where equal offsets make a collision certain, and left to the per-pass check otherwise.
struct VMIDSet: Sendable, Equatable {
    /// The intervals, sorted and merged.
    var intervals: [ClosedRange<Int>]
    /// False when the set stands for a selection that cannot be enumerated.
    var bounded: Bool

    /// Every VMID PVE allows, unbounded.
    static let everything = VMIDSet(intervals: [vmidRange], bounded: false)

    /// A set of any intervals (sorted and merged here).
    init(intervals: [ClosedRange<Int>], bounded: Bool) {
        self.intervals = VMIDSet.normalize(intervals)
        self.bounded = bounded
    }

    /// The VMIDs a source selects: include minus exclude (exclusions that cannot be enumerated are ignored: over-approximation).
    init(include: Selection, exclude: Selection) {
        let inc = VMIDSet(selection: include)
        let exc = VMIDSet(selection: exclude)
        self = exc.bounded ? inc.subtracting(exc) : inc
    }

    /// The VMIDs a selection names; a `*` glob or more than four `?` make it all of ``vmidRange``, unbounded.
    init(selection s: Selection) {
        if s.everything { self = .everything; return }
        var out: [ClosedRange<Int>] = []
        var bounded = true
        for item in s.items {
            switch item {
            case .id(let n): out.append(n...n)
            case .range(let r): out.append(r)
            case .glob(let g):
                if g.contains("*") {
                    bounded = false
                    out.append(vmidRange)
                } else {
                    // `?` only: every number of that many digits matching it (at most 10^k, k small).
                    // No `?` either (digits Int() does not read, such as non-ASCII ones): nothing
                    // it can match is a VMID we could list, so it adds nothing.
                    let q = g.filter { $0 == "?" }.count
                    guard q <= 4 else { bounded = false; out.append(vmidRange); continue }
                    guard q > 0 else { continue }
                    for n in 0..<Self.pow10(q) {
                        var digits = Array(String(repeating: "0", count: max(0, q - String(n).count)) + String(n))
                        let text = String(g.map { ch -> Character in ch == "?" ? digits.removeFirst() : ch })
                        if let v = Int(text), String(v).count == g.count { out.append(v...v) }
                    }
                }
            }
        }
        self.init(intervals: out, bounded: bounded)
    }

    /// 10 to the power `k`, in integers (small `k`).
    static func pow10(_ k: Int) -> Int { (0..<k).reduce(1) { r, _ in r * 10 } }


    /// Sorts intervals and merges overlapping or adjacent ones.
    static func normalize(_ list: [ClosedRange<Int>]) -> [ClosedRange<Int>] {
        let sorted = list.sorted { $0.lowerBound < $1.lowerBound }
        var out: [ClosedRange<Int>] = []
        for r in sorted {
            if let last = out.last, r.lowerBound <= last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    /// Every VMID plus `offset` (wrapping arithmetic: an absurd offset must not trap).
    func shifted(by offset: Int) -> VMIDSet {
        VMIDSet(intervals: intervals.map { ($0.lowerBound &+ offset)...($0.upperBound &+ offset) }, bounded: bounded)
    }

    /// The VMIDs of this set not in `other`; `bounded` stays as it is.
    func subtracting(_ other: VMIDSet) -> VMIDSet {
        var out: [ClosedRange<Int>] = []
        for r in intervals {
            var pieces = [r]
            for o in other.intervals {
                pieces = pieces.flatMap { p -> [ClosedRange<Int>] in
                    guard p.overlaps(o) else { return [p] }
                    var rest: [ClosedRange<Int>] = []
                    if p.lowerBound < o.lowerBound { rest.append(p.lowerBound...(o.lowerBound - 1)) }
                    if p.upperBound > o.upperBound { rest.append((o.upperBound + 1)...p.upperBound) }
                    return rest
                }
            }
            out += pieces
        }
        return VMIDSet(intervals: out, bounded: bounded)
    }

    /// The first VMID in both sets, if any.
    func firstCommon(_ other: VMIDSet) -> Int? {
        var i = 0, j = 0
        while i < intervals.count, j < other.intervals.count {
            let a = intervals[i], b = other.intervals[j]
            if a.overlaps(b) { return max(a.lowerBound, b.lowerBound) }
            if a.upperBound < b.upperBound { i += 1 } else { j += 1 }
        }
        return nil
    }

    /// No VMID in the set.
    var isEmpty: Bool { intervals.isEmpty }
    /// The smallest VMID; nil when empty.
    var minimum: Int? { intervals.first?.lowerBound }
    /// The largest VMID; nil when empty.
    var maximum: Int? { intervals.last?.upperBound }
}

/// The slot map of a configuration: every family of target VMIDs (each source's primary slots,
/// and with `keep_previous` its second slots), checked as a whole.
public enum SlotMap {
    /// One family of slots: a source's selection shifted by an offset.
    struct Family {
        /// Index of the source in `sources`.
        var source: Int
        /// The source's storage id.
        var storage: String
        /// The keep_previous slots, not the primary ones.
        var secondary: Bool
        /// Selected VMID + offset = slot: `vmid_offset`, plus `previous_vmid_offset` when secondary.
        var offset: Int
        /// The VMIDs the source selects (before the offset).
        var set: VMIDSet
        /// The config keys that make up the family, for error messages.
        var keys: String
        /// The line of the source's entry in the config file.
        var line: Int?

        /// How errors name the family.
        var name: String { "\(secondary ? "keep_previous slots" : "slots") of source '\(storage)' (\(keys))" }
    }

    /// Every family of the config: per source its primary slots, and its keep_previous slots when enabled.
    static func families(_ c: StandbyConfig) -> [Family] {
        var out: [Family] = []
        for (i, s) in c.sources.enumerated() {
            let set = VMIDSet(include: s.include, exclude: s.exclude)
            let base = "sources[\(i)].include + sources[\(i)].vmid_offset \(s.vmidOffset)"
            out.append(Family(source: i, storage: s.storage, secondary: false, offset: s.vmidOffset, set: set, keys: base, line: s.line))
            if c.restore.keepPrevious {
                out.append(Family(source: i, storage: s.storage, secondary: true, offset: s.vmidOffset + c.restore.previousVmidOffset, set: set,
                                  keys: base + " + restore.previous_vmid_offset \(c.restore.previousVmidOffset)", line: s.line))
            }
        }
        return out
    }

    /// Refuses at load what can be known without PVE: explicit selections outside 100–999999999
    /// or mapped outside it, and families that certainly share a VMID — equal offsets with
    /// overlapping selections, or enumerable selections whose shifted sets intersect (a
    /// `keep_previous` slot equal to another source's primary, two sources mapping one VMID).
    /// Selections that cannot be enumerated (everything, `*` globs) with different offsets are
    /// checked each pass against the real listing instead (``conflicts(_:)``).
    public static func validate(_ c: StandbyConfig) throws(ConfigError) {
        for (i, s) in c.sources.enumerated() {
            let set = VMIDSet(selection: s.include)
            if set.bounded, let lo = set.minimum, lo < vmidRange.lowerBound {
                throw ConfigError(path: "sources[\(i)].include", line: s.line, message: "VMID \(lo) is outside PVE's range 100–999999999")
            }
            if set.bounded, let hi = set.maximum {
                if hi > vmidRange.upperBound {
                    throw ConfigError(path: "sources[\(i)].include", line: s.line, message: "VMID \(hi) is outside PVE's range 100–999999999")
                }
                let extra = c.restore.keepPrevious ? c.restore.previousVmidOffset : 0
                if hi + s.vmidOffset + extra > vmidRange.upperBound {
                    throw ConfigError(path: "sources[\(i)].vmid_offset", line: s.line,
                                      message: "VMID \(hi) + offset \(s.vmidOffset)\(extra > 0 ? " + previous_vmid_offset \(extra)" : "") = \(hi + s.vmidOffset + extra) is beyond PVE's largest VMID 999999999")
                }
            }
        }
        let fams = families(c)
        // The drill's scratch VMIDs are a slot range of their own: no selected guest's target may
        // fall in it (a clone drill would otherwise create a guest where a copy belongs). A
        // selection that cannot be enumerated is checked per clone instead (the scratch VMID must
        // be free in PVE and no selected guest's target).
        if let scratch = c.drill.scratchVmids {
            for f in fams where f.set.bounded {
                if let hit = f.set.shifted(by: f.offset).firstCommon(VMIDSet(intervals: [scratch], bounded: true)) {
                    throw ConfigError(path: "drill.scratch_vmids", line: nil,
                                      message: "VMID \(hit) of the scratch range \(scratch.lowerBound)-\(scratch.upperBound) is also a target of the \(f.name); choose a range no source maps to")
                }
            }
        }
        for a in 0..<fams.count {
            for b in (a + 1)..<fams.count {
                let x = fams[a], y = fams[b]
                let collision: Int?
                if x.offset == y.offset {
                    // Same target for the same backed-up VMID: any VMID selected by both collides.
                    guard x.source != y.source else { continue }
                    collision = x.set.firstCommon(y.set).map { $0 + x.offset }
                } else if x.set.bounded && y.set.bounded {
                    collision = x.set.shifted(by: x.offset).firstCommon(y.set.shifted(by: y.offset))
                } else {
                    collision = nil
                }
                if let vmid = collision {
                    throw ConfigError(path: "sources[\(y.source)]", line: y.line ?? x.line,
                                      message: "target VMID \(vmid) is claimed twice: by the \(x.name) and by the \(y.name); change an offset or narrow include/exclude")
                }
            }
        }
    }

    /// A slot one selected guest claims this pass.
    public struct Claim: Sendable, Hashable {
        /// The guest claiming the slot.
        public var key: GuestKey
        /// The target VMID claimed.
        public var target: Int
        /// The claim is the guest's keep_previous slot, not its primary.
        public var secondary: Bool
        /// A claim.
        public init(key: GuestKey, target: Int, secondary: Bool) {
            self.key = key
            self.target = target
            self.secondary = secondary
        }
    }

    /// Target VMIDs claimed more than once, with their claimants: every claimant of such a slot is
    /// `blocked(slot_conflict)` and nothing is restored into it (pure).
    public static func conflicts(_ claims: [Claim]) -> [GuestKey: [Claim]] {
        let byTarget = Dictionary(grouping: claims, by: \.target)
        var out: [GuestKey: [Claim]] = [:]
        for (_, cs) in byTarget where Set(cs.map(\.key)).count > 1 {
            for c in cs { out[c.key, default: []] += cs.filter { $0.key != c.key } }
        }
        return out
    }
}
