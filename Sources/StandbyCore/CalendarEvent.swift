import Foundation

/// A PVE calendar event (`drill.schedule`, the syntax of PVE backup job schedules).
///
/// A port of `proxmox-time`'s `CalendarEvent` (proxmox-rs, `proxmox-time/src/calendar_event.rs`),
/// which PVE uses for `vzdump` job schedules: the same grammar (see `CalendarEventParser.swift`)
/// and the same search for the next event (`compute_next_event`).
///
/// Examples: `sun 03:00`, `mon..fri 22:30`, `*:0/15`, `daily`, `sat *-1..7 15:00`,
/// `2026-12-24 08:00`, `mon,wed,fri 1:00`, `0/2:00`, `daily UTC`.
///
/// Two events are equal when they were parsed from the same text (the text is part of the value).
public struct CalendarEvent: Sendable, Equatable, CustomStringConvertible {
    /// The text it was parsed from.
    public var description: String { text }

    /// The text it was parsed from.
    let text: String
    /// Evaluated in UTC (the text ends with `UTC`) rather than in the caller's time zone.
    let utc: Bool
    /// The weekdays (bit 0 = Monday … bit 6 = Sunday); none or all means any day.
    let days: UInt8
    /// The seconds (0–59) it fires at; empty means every second.
    let second: [CalendarValue]
    /// The minutes (0–59) it fires at; empty means every minute.
    let minute: [CalendarValue]
    /// The hours (0–23) it fires at; empty means every hour.
    let hour: [CalendarValue]
    /// The days of the month (1–31) it fires on; empty means every day.
    let day: [CalendarValue]
    /// The months (1–12) it fires in; empty means every month.
    let month: [CalendarValue]
    /// The years (0–2199) it fires in; empty means every year.
    let year: [CalendarValue]

    /// Parses; the error message says what is wrong and where in the text.
    public init(parsing text: String) throws(CalendarEventError) {
        self = try CalendarEventParser.parse(text)
    }

    /// Builds an event from parsed components (used by the parser).
    init(text: String, utc: Bool, days: UInt8 = 0, second: [CalendarValue] = [], minute: [CalendarValue] = [],
         hour: [CalendarValue] = [], day: [CalendarValue] = [], month: [CalendarValue] = [], year: [CalendarValue] = []) {
        self.text = text
        self.utc = utc
        self.days = days
        self.second = second
        self.minute = minute
        self.hour = hour
        self.day = day
        self.month = month
        self.year = year
    }

    /// The first time strictly after `after` (unix seconds) at which the event fires, evaluated in `timeZone` (node-local time; `utc` in the text overrides it); nil when it never fires again (e.g. a past fixed date).
    ///
    /// `compute_next_event`: start one second after `after` (events fire on whole seconds) and
    /// repeatedly fix the largest component that does not match — a year, month or day that does
    /// not match moves to the start of the next candidate year, month or day; an hour, minute or
    /// second moves to the next candidate value (or to the start of the next larger unit) — until
    /// every component matches. As in the Rust code, the search gives up (nil) after 1000 steps,
    /// which only happens for dates that never exist (`02-30`).
    ///
    /// The search works on local wall-clock fields like Rust's `TmEditor` (libc `mktime` with
    /// `tm_isdst = -1`); see ``LocalClock`` for how times in a DST gap or overlap are resolved.
    public func next(after: Double, timeZone: TimeZone) -> Double? {
        // ±10^12 s is ±31,000 years: beyond that there is nothing sensible to compute.
        guard after.isFinite, abs(after) < 1e12 else { return nil }
        let last = Int64(after.rounded(.down))
        let zone: LocalClock.Zone = utc ? .fixed(0) : LocalClock.Zone(timeZone)
        var t = LocalClock(epoch: last + 1, zone: zone)  // at least one second later
        let allDays = days == 0 || days == 0x7f

        for _ in 0...1000 {  // cancel after 1000 loops (as Rust)
            if !year.isEmpty {
                guard t.year >= 0 else { return nil }  // Rust: u32 conversion error
                if !CalendarValue.list(year, contains: t.year) {
                    // if we have no valid year, we cannot find a correct timestamp
                    guard let n = CalendarValue.next(in: year, after: t.year) else { return nil }
                    t.addYears(n - t.year)
                    continue
                }
            }
            if !month.isEmpty, !CalendarValue.list(month, contains: t.month) {
                if let n = CalendarValue.next(in: month, after: t.month) {
                    t.addMonths(n - t.month)
                } else {
                    t.addYears(1)  // retry next year
                }
                continue
            }
            if !day.isEmpty, !CalendarValue.list(day, contains: t.day) {
                if let n = CalendarValue.next(in: day, after: t.day) {
                    t.addDays(n - t.day)
                } else {
                    t.addMonths(1)  // retry next month
                }
                continue
            }
            if !allDays {
                let dayNum = t.weekday  // Monday = 0 … Sunday = 6
                if days & (1 << dayNum) == 0 {
                    if let n = ((dayNum + 1)..<7).first(where: { days & (1 << $0) != 0 }) {
                        t.addDays(n - dayNum)  // try next day
                    } else {
                        t.addDays(7 - dayNum)  // try next week
                    }
                    continue
                }
            }
            // this day
            if !hour.isEmpty, !CalendarValue.list(hour, contains: t.hour) {
                if let n = CalendarValue.next(in: hour, after: t.hour) {
                    t.setTime(hour: n, minute: 0, second: 0)
                } else {
                    t.addDays(1)
                }
                continue
            }
            // this hour
            if !minute.isEmpty, !CalendarValue.list(minute, contains: t.minute) {
                if let n = CalendarValue.next(in: minute, after: t.minute) {
                    t.setMinuteSecond(minute: n, second: 0)
                } else {
                    t.setTime(hour: t.hour + 1, minute: 0, second: 0)
                }
                continue
            }
            // this minute
            if !second.isEmpty, !CalendarValue.list(second, contains: t.second) {
                if let n = CalendarValue.next(in: second, after: t.second) {
                    t.setSecond(n)
                } else {
                    t.setMinuteSecond(minute: t.minute + 1, second: 0)
                }
                continue
            }
            return Double(t.epoch)
        }
        return nil
    }
}

/// Why a calendar event could not be parsed.
public struct CalendarEventError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong and where, e.g. `invalid calendar event 'sun 25:61': 61 is too large (at most 59) (column 8)`.
    public var message: String
    /// The message.
    public var description: String { message }

    /// An error with this message.
    public init(message: String) { self.message = message }
}

/// One entry of a component list (`DateTimeValue` in Rust): `5`, `4..10`, `0/15`, `4..10/2`.
enum CalendarValue: Sendable, Equatable {
    /// Exactly this value.
    case single(Int64)
    /// Every value from `start` through `end`.
    case range(Int64, Int64)
    /// `start`, `start + step`, … (up to `end` when given); a step of 0 is `start` alone.
    case repeated(Int64, Int64, Int64?)

    /// Whether the entry contains `value`.
    func contains(_ value: Int64) -> Bool {
        switch self {
        case .single(let v): return v == value
        case .range(let start, let end): return value >= start && value <= end
        case .repeated(let start, let step, let end):
            guard value >= start else { return false }
            guard step > 0 else { return start == value }
            return (value - start) % step == 0 && (end.map { value <= $0 } ?? true)
        }
    }

    /// Whether any entry of `list` contains `value`.
    static func list(_ list: [CalendarValue], contains value: Int64) -> Bool {
        list.contains { $0.contains(value) }
    }

    /// The smallest value greater than `value` that some entry of `list` gives (Rust's
    /// `find_next`; like it, a range only offers `value + 1` once `value` is inside it).
    static func next(in list: [CalendarValue], after value: Int64) -> Int64? {
        var best: Int64?
        func offer(_ v: Int64) { if best.map({ v < $0 }) ?? true { best = v } }
        for entry in list {
            switch entry {
            case .single(let v):
                if v > value { offer(v) }
            case .range(let start, let end):
                if value < start {
                    offer(start)
                } else if value + 1 >= start && value + 1 <= end {
                    offer(value + 1)
                }
            case .repeated(let start, let step, let end):
                if value < start {
                    offer(start)
                } else if step > 0 {
                    let n = start + ((value - start + step) / step) * step
                    if end.map({ n <= $0 }) ?? true { offer(n) }
                }
            }
        }
        return best
    }
}

/// Local wall-clock fields of one instant that can be moved forward (Rust's `TmEditor`, which
/// edits a libc `struct tm` and normalizes it with `mktime`/`timegm` after every change).
///
/// Every edit sets fields (possibly out of range: hour 24, day 32, month 13), normalizes them
/// arithmetically into a local date and time, turns that into an instant in the zone, and reads
/// the fields back from the instant — as `mktime` does.
///
/// DST — a local time that does not exist (it falls in a spring-forward gap) is read with the
/// UTC offset in force before the gap, so it lands the gap's length later (02:30 becomes 03:30
/// CEST in Europe/Berlin). glibc's `mktime` (`tm_isdst = -1`), which the Rust `TmEditor` uses,
/// does the same in a fresh process, but it takes the offset from a cache of its previous call,
/// so at times it lands the gap's length earlier, and then the Rust search returns a time before
/// `after` or loops until it gives up; landing later always makes progress. The search goes on
/// from where it landed: an event whose only matching times that day lie in the gap (`2:30` in
/// Berlin, or `daily` where DST starts at midnight, as in America/Sao_Paulo until 2019) does not
/// fire that day, as in PVE. A local time that exists twice (fall-back overlap) takes the first
/// of its instants that is not before the current one: the search stays in the pass of the
/// overlap it is in, so a wall time fires once and the result is never before `after` (glibc
/// again picks by its cached offset, either pass).
struct LocalClock {
    /// How local time relates to UTC.
    enum Zone {
        /// A constant offset from UTC in seconds (UTC: events with `UTC`, or a UTC zone).
        case fixed(Int64)
        /// A zone with transitions.
        case zone(TimeZone)

        /// `timeZone` (a fixed offset for UTC/GMT, which needs no look-ups).
        init(_ timeZone: TimeZone) {
            if timeZone.identifier == "UTC" || timeZone.identifier == "GMT" {
                self = .fixed(0)
            } else {
                self = .zone(timeZone)
            }
        }

        /// The UTC offset (seconds) in force at `epoch`.
        func offset(at epoch: Int64) -> Int64 {
            switch self {
            case .fixed(let o): return o
            case .zone(let tz): return Int64(tz.secondsFromGMT(for: Date(timeIntervalSince1970: Double(epoch))))
            }
        }
    }

    /// The zone the fields are in.
    let zone: Zone
    /// The instant the fields describe (unix seconds).
    private(set) var epoch: Int64 = 0
    /// The year (e.g. 2026).
    private(set) var year: Int64 = 0
    /// The month, 1–12.
    private(set) var month: Int64 = 0
    /// The day of the month, 1–31.
    private(set) var day: Int64 = 0
    /// The hour, 0–23.
    private(set) var hour: Int64 = 0
    /// The minute, 0–59.
    private(set) var minute: Int64 = 0
    /// The second, 0–59.
    private(set) var second: Int64 = 0
    /// The weekday, Monday = 0 … Sunday = 6.
    private(set) var weekday: Int64 = 0

    /// The local fields of `epoch` (`localtime`/`gmtime`).
    init(epoch: Int64, zone: Zone) {
        self.zone = zone
        load(epoch)
    }

    /// Adds `n` years (n > 0) and resets the smaller fields to January 1st 00:00:00.
    mutating func addYears(_ n: Int64) {
        guard n != 0 else { return }
        normalize(year: year + n, month: 1, day: 1, hour: 0, minute: 0, second: 0)
    }

    /// Adds `n` months (n > 0) and resets the smaller fields to the 1st 00:00:00.
    mutating func addMonths(_ n: Int64) {
        guard n != 0 else { return }
        normalize(year: year, month: month + n, day: 1, hour: 0, minute: 0, second: 0)
    }

    /// Adds `n` days (n > 0) and resets the time to 00:00:00.
    mutating func addDays(_ n: Int64) {
        guard n != 0 else { return }
        normalize(year: year, month: month, day: day + n, hour: 0, minute: 0, second: 0)
    }

    /// Sets the time of day (values may overflow into the next day).
    mutating func setTime(hour h: Int64, minute m: Int64, second s: Int64) {
        normalize(year: year, month: month, day: day, hour: h, minute: m, second: s)
    }

    /// Sets minute and second (values may overflow into the next hour).
    mutating func setMinuteSecond(minute m: Int64, second s: Int64) {
        normalize(year: year, month: month, day: day, hour: hour, minute: m, second: s)
    }

    /// Sets the second (may overflow into the next minute).
    mutating func setSecond(_ s: Int64) {
        normalize(year: year, month: month, day: day, hour: hour, minute: minute, second: s)
    }

    /// `mktime`: carries out-of-range fields, resolves the local time to an instant, reloads.
    private mutating func normalize(year y: Int64, month m: Int64, day d: Int64, hour h: Int64, minute mi: Int64, second s: Int64) {
        let m0 = m - 1
        let yy = y + floorDiv(m0, 12)
        let days = Self.daysFromCivil(yy, floorMod(m0, 12) + 1, 1) + (d - 1)
        let local = days * 86_400 + h * 3_600 + mi * 60 + s
        load(resolve(local: local))
    }

    /// The instant whose local time is `local` (seconds since 1970-01-01 00:00 local).
    private func resolve(local: Int64) -> Int64 {
        switch zone {
        case .fixed(let o):
            return local - o
        case .zone:
            // The offsets a day either side bracket the (at most one) transition near `local`.
            let before = zone.offset(at: local - 86_400)
            let after = zone.offset(at: local + 86_400)
            var candidates: [Int64] = []
            for o in [before, after, zone.offset(at: local - before)] where !candidates.contains(local - o) {
                if zone.offset(at: local - o) == o { candidates.append(local - o) }
            }
            candidates.sort()
            // In an overlap: the first instant not before the current one. None valid: a gap,
            // read with the offset before it (it lands the gap's length later).
            return candidates.first { $0 >= epoch } ?? candidates.last ?? (local - before)
        }
    }

    /// Sets `epoch` and the local fields of it.
    private mutating func load(_ e: Int64) {
        epoch = e
        let local = e + zone.offset(at: e)
        let days = floorDiv(local, 86_400)
        let secs = local - days * 86_400
        (year, month, day) = Self.civilFromDays(days)
        hour = secs / 3_600
        minute = secs % 3_600 / 60
        second = secs % 60
        weekday = floorMod(days + 3, 7)  // 1970-01-01 was a Thursday
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date of a day count since 1970-01-01 (`civil_from_days`).
    static func civilFromDays(_ z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = z0 + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}

/// `a / b` rounded towards minus infinity (b > 0).
private func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
/// `a mod b` in 0..<b (b > 0).
private func floorMod(_ a: Int64, _ b: Int64) -> Int64 { a - floorDiv(a, b) * b }
