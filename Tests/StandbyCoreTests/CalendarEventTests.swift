import Foundation
import Testing
@testable import StandbyCore

/// `CalendarEvent`, the port of proxmox-time's calendar events (PVE backup job schedules).
///
/// The expected instants of "Rust unit tests" are those of `proxmox-time/src/test.rs`
/// (`test_compute_next_event`); those of "golden" tables were computed with proxmox-time itself
/// (HEAD of proxmox-rs, on glibc) in the named zone.
@Suite("Calendar events")
struct CalendarEventTests {
    /// Durations in seconds (Rust's `MIN`, `HOUR`, `DAY`).
    static let oneMinute: Int64 = 60, oneHour: Int64 = 3600, oneDay: Int64 = 86_400
    /// 1970-01-01 00:00:00 UTC, a Thursday.
    static let thursday0000: Int64 = 0
    /// 1970-01-01 15:00:00 UTC.
    static let thursday1500: Int64 = 15 * 3600
    /// Friday, 2020-07-31 00:00:00 UTC.
    static let jul31_2020: Int64 = 1_596_153_600
    /// Thursday, 2020-12-31 00:00:00 UTC.
    static let dec31_2020: Int64 = 1_609_372_800
    /// A zone with DST (Europe/Berlin).
    static let berlin = TimeZone(identifier: "Europe/Berlin")!
    /// UTC.
    static let utc = TimeZone(identifier: "UTC")!

    /// Rust's `test_value`: the event with ` UTC` appended, evaluated after `last`. The zone
    /// passed is Berlin: `UTC` in the text must override it.
    static func next(_ event: String, _ last: Int64) throws -> Int64? {
        let e = try CalendarEvent(parsing: "\(event) UTC")
        return e.next(after: Double(last), timeZone: berlin).map { Int64($0) }
    }

    // MARK: - The Rust unit tests (test.rs)

    /// `test_value(event, last, expect)` calls of `test_compute_next_event`.
    static let rustCases: [(String, Int64, Int64)] = [
        // minute only syntax
        ("0", thursday0000, thursday0000 + oneHour),
        ("*", thursday0000, thursday0000 + oneMinute),
        ("*:0", thursday0000, thursday0000 + oneHour),
        ("*:*", thursday0000, thursday0000 + oneMinute),
        ("*:*:*", thursday0000, thursday0000 + 1),
        ("*:3:5", thursday0000, thursday0000 + 3 * oneMinute + 5),
        ("mon *:*", thursday0000, thursday0000 + 4 * oneDay),
        ("mon 2:*", thursday0000, thursday0000 + 4 * oneDay + 2 * oneHour),
        ("mon 2:50", thursday0000, thursday0000 + 4 * oneDay + 2 * oneHour + 50 * oneMinute),
        ("tue", thursday0000, thursday0000 + 5 * oneDay),
        ("wed", thursday0000, thursday0000 + 6 * oneDay),
        ("thu", thursday0000, thursday0000 + 7 * oneDay),
        ("fri", thursday0000, thursday0000 + 1 * oneDay),
        ("sat", thursday0000, thursday0000 + 2 * oneDay),
        ("sun", thursday0000, thursday0000 + 3 * oneDay),
        // repeated ranges
        ("4..10/2:0", thursday0000, thursday0000 + 4 * oneHour),
        ("4..10/2:0", thursday0000 + 5 * oneHour, thursday0000 + 6 * oneHour),
        ("4..10/2:0", thursday0000 + 11 * oneHour, thursday0000 + 1 * oneDay + 4 * oneHour),
        // several values for one field, in any order
        ("5,10:4,8", thursday0000, thursday0000 + 5 * oneHour + 4 * oneMinute),
        ("10,5:8,4", thursday0000, thursday0000 + 5 * oneHour + 4 * oneMinute),
        ("6,4..10:23,5/5", thursday0000, thursday0000 + 4 * oneHour + 5 * oneMinute),
        ("4..10,6:5/5,23", thursday0000, thursday0000 + 4 * oneHour + 5 * oneMinute),
        // month wrapping
        ("sat", jul31_2020, jul31_2020 + 1 * oneDay),
        ("sun", jul31_2020, jul31_2020 + 2 * oneDay),
        ("mon", jul31_2020, jul31_2020 + 3 * oneDay),
        ("tue", jul31_2020, jul31_2020 + 4 * oneDay),
        ("wed", jul31_2020, jul31_2020 + 5 * oneDay),
        ("thu", jul31_2020, jul31_2020 + 6 * oneDay),
        ("fri", jul31_2020, jul31_2020 + 7 * oneDay),
        // year wrapping
        ("fri", dec31_2020, dec31_2020 + 1 * oneDay),
        ("sat", dec31_2020, dec31_2020 + 2 * oneDay),
        ("sun", dec31_2020, dec31_2020 + 3 * oneDay),
        ("mon", dec31_2020, dec31_2020 + 4 * oneDay),
        ("tue", dec31_2020, dec31_2020 + 5 * oneDay),
        ("wed", dec31_2020, dec31_2020 + 6 * oneDay),
        ("thu", dec31_2020, dec31_2020 + 7 * oneDay),
        ("daily", thursday0000, thursday0000 + oneDay),
        ("daily", thursday0000 + 1, thursday0000 + oneDay),
        // dates
        ("2020-07-31", 0, jul31_2020),
        ("02-28", 0, (31 + 27) * oneDay),
        ("02-29", 0, 2 * 365 * oneDay + (31 + 28) * oneDay),  // 1972-02-29
        ("1965/5-01-01", -1, thursday0000),
        ("2020-7..9-2/2", jul31_2020, jul31_2020 + 2 * oneDay),
        ("2020,2021-12-31", jul31_2020, dec31_2020),
        // keyword shortcuts
        ("minutely", thursday0000, thursday0000 + oneMinute),
        ("hourly", thursday0000, thursday0000 + oneHour),
        ("weekly", thursday0000, thursday0000 + 4 * oneDay),  // next Monday
        ("monthly", 0, 31 * oneDay),
        ("quarterly", 0, (31 + 28 + 31) * oneDay),
        ("semiannually", 0, (31 + 28 + 31 + 30 + 31 + 30) * oneDay),
        ("semi-annually", 0, (31 + 28 + 31 + 30 + 31 + 30) * oneDay),
        ("yearly", 0, 365 * oneDay),
        ("annually", 0, 365 * oneDay),
    ]

    /// One `test_value` call.
    @Test("Rust test_compute_next_event", arguments: rustCases.indices)
    func rustComputeNextEvent(_ i: Int) throws {
        let (event, last, expect) = Self.rustCases[i]
        #expect(try Self.next(event, last) == expect, "\(event) after \(last)")
    }

    /// The chained `test_value` calls (each result is the next `last`).
    @Test func rustChains() throws {
        var n = try #require(try Self.next("5/2:0", Self.thursday0000))
        #expect(n == 5 * Self.oneHour)
        for h: Int64 in [7, 9, 11] {
            n = try #require(try Self.next("5/2:0", n))
            #expect(n == h * Self.oneHour)
        }
        n = Self.thursday0000
        for i in Int64(1)..<100 {
            n = try #require(try Self.next("*:*", n))
            #expect(n == i * Self.oneMinute)
        }
        n = Self.thursday0000
        for i in Int64(1)..<100 {
            n = try #require(try Self.next("*:0", n))
            #expect(n == i * Self.oneHour)
        }
        n = Self.thursday1500
        for i in Int64(1)..<100 {
            n = try #require(try Self.next("1:0", n))
            #expect(n == i * Self.oneDay + Self.oneHour)
        }
    }

    /// `test_never`: dates that do not exist.
    @Test func rustNever() throws {
        #expect(try Self.next("2021-02-29", 0) == nil)
        #expect(try Self.next("02-30", 0) == nil)
    }

    /// `test_calendar_event_weekday`: weekday lists and ranges parse (at 00:00:00).
    @Test("Rust test_calendar_event_weekday", arguments: [
        "mon,wed..fri", "fri..mon", "mon", "MON", "monDay", "tue", "Tuesday", "wed", "wednesday", "thu",
        "thursday", "fri", "friday", "sat", "saturday", "sun", "sunday", "mon..fri", "mon,tue,fri",
        "mon,tue..wednesday,fri..sat",
    ])
    func rustWeekdays(_ text: String) throws {
        let e = try CalendarEvent(parsing: text)
        #expect(e.days != 0)
        #expect(e.hour == [.single(0)] && e.minute == [.single(0)] && e.second == [.single(0)])
    }

    /// Weekday ranges, including one that wraps past Sunday.
    @Test func weekdayRanges() throws {
        #expect(try CalendarEvent(parsing: "fri..mon").days == 0b111_0001)  // fri sat sun mon
        #expect(try CalendarEvent(parsing: "mon..fri").days == 0b001_1111)
        #expect(try CalendarEvent(parsing: "mon,wed..fri").days == 0b001_1101)
        #expect(try CalendarEvent(parsing: "wed..wed").days == 0b000_0100)
    }

    /// The examples of the Rust doc comments.
    @Test func rustDocExamples() throws {
        #expect(try CalendarEvent(parsing: "daily UTC").next(after: 0, timeZone: Self.berlin) == 86_400)
        #expect(try CalendarEvent(parsing: "mon..fri *:00 UTC").next(after: 0, timeZone: Self.berlin) == 3600)
        #expect(try CalendarEvent(parsing: "2020-07-31 12:00 UTC").next(after: 0, timeZone: Self.berlin) != nil)
    }

    // MARK: - Golden values from proxmox-time

    /// The schedule examples of PVE backup jobs.
    static let examples = [
        "sun 03:00", "mon..fri 22:30", "*:0/15", "daily", "hourly", "weekly", "monthly", "sat *-1..7 15:00",
        "2026-12-24 08:00", "mon,wed,fri 1:00", "0/2:00", "yearly", "quarterly", "semiannually", "minutely", "daily UTC",
    ]
    /// After 2026-05-25 12:00:00 UTC (a Monday) and 2026-12-31 23:59:30 UTC: two results per example.
    static let golden: [(String, [Int64?])] = [
        ("UTC", [1780196400, 1798945200, 1779748200, 1798842600, 1779711300, 1798761600, 1779753600, 1798761600,
                 1779714000, 1798761600, 1780272000, 1799020800, 1780272000, 1798761600, 1780758000, 1798902000,
                 1798099200, nil, 1779843600, 1798765200, 1779717600, 1798761600, 1798761600, 1798761600,
                 1782864000, 1798761600, 1782864000, 1798761600, 1779710460, 1798761600, 1779753600, 1798761600]),
        ("Europe/Berlin", [1780189200, 1798941600, 1779741000, 1798839000, 1779711300, 1798761600, 1779746400,
                           1798844400, 1779714000, 1798761600, 1780264800, 1799017200, 1780264800, 1801436400,
                           1780750800, 1798898400, 1798095600, nil, 1779836400, 1798761600, 1779717600, 1798765200,
                           1798758000, 1830294000, 1782856800, 1806530400, 1782856800, 1814392800, 1779710460,
                           1798761600, 1779753600, 1798761600]),
        ("America/New_York", [1780210800, 1798963200, 1779762600, 1798774200, 1779711300, 1798761600, 1779768000,
                              1798779600, 1779714000, 1798761600, 1780286400, 1799038800, 1780286400, 1798779600,
                              1780772400, 1798920000, 1798117200, nil, 1779858000, 1798783200, 1779717600,
                              1798765200, 1798779600, 1798779600, 1782878400, 1798779600, 1782878400, 1798779600,
                              1779710460, 1798761600, 1779753600, 1798761600]),
        ("Australia/Lord_Howe", [1780158600, 1798905600, 1779796800, 1798803000, 1779711300, 1798761600, 1779715800,
                                 1798808400, 1779712200, 1798761600, 1780234200, 1798981200, 1780234200, 1801400400,
                                 1780720200, 1798862400, 1798059600, nil, 1779805800, 1798984800, 1779715800,
                                 1798765200, 1798722000, 1830258000, 1782826200, 1806498000, 1782826200, 1814362200,
                                 1779710460, 1798761600, 1779753600, 1798761600]),
    ]

    /// Each example in each zone of ``golden``.
    @Test("Golden values of the schedule examples", arguments: golden.indices)
    func goldenExamples(_ z: Int) throws {
        let (zoneName, expected) = Self.golden[z]
        let zone = try #require(TimeZone(identifier: zoneName))
        for (i, text) in Self.examples.enumerated() {
            let e = try CalendarEvent(parsing: text)
            for (j, after) in [1_779_710_400.0, 1_798_761_570.0].enumerated() {
                #expect(e.next(after: after, timeZone: zone).map { Int64($0) } == expected[2 * i + j],
                        "\(text) after \(after) in \(zoneName)")
            }
        }
    }

    // MARK: - DST

    /// 2021-03-28 in Berlin: 02:00 CET jumps to 03:00 CEST. A time in the gap is read with the
    /// offset before it (glibc `mktime`), landing an oneHour later; `2:30` and `2:*` skip the day.
    @Test func springForwardGap() throws {
        let midnight = 1_616_886_000.0  // 2021-03-28 00:00 CET
        func next(_ t: String, _ after: Double) throws -> Double? {
            try CalendarEvent(parsing: t).next(after: after, timeZone: Self.berlin)
        }
        #expect(try next("2:30", midnight) == 1_616_977_800)       // 2021-03-29 02:30 CEST
        #expect(try next("2:*", midnight) == 1_616_976_000)        // 2021-03-29 02:00 CEST
        #expect(try next("*:30", midnight + 3600) == 1_616_891_400)  // 01:30 CET
        #expect(try next("*:30", midnight + 6300) == 1_616_895_000)  // after 01:45 CET: 03:30 CEST
        #expect(try next("daily", midnight) == 1_616_968_800)      // 2021-03-29 00:00 CEST
        // America/Sao_Paulo, 2018-11-04: DST began at midnight, so `daily` skipped that oneDay (as PVE).
        let saoPaulo = try #require(TimeZone(identifier: "America/Sao_Paulo"))
        #expect(try CalendarEvent(parsing: "daily").next(after: 1_541_246_400, timeZone: saoPaulo) == 1_541_383_200)
    }

    /// 2021-10-31 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:00–02:59 happen twice. The
    /// search stays in the pass it is in, so `2:30` fires once and results never go backwards.
    @Test func fallBackOverlap() throws {
        let e = try CalendarEvent(parsing: "2:30")
        let midnight = 1_635_631_200.0  // 2021-10-31 00:00 CEST
        let firstPass = 1_635_640_200.0  // 02:30 CEST
        #expect(e.next(after: midnight, timeZone: Self.berlin) == firstPass)
        #expect(e.next(after: firstPass, timeZone: Self.berlin) == 1_635_730_200)  // 2021-11-01 02:30 CET
        let secondPass0210 = 1_635_642_600.0  // 02:10 CET
        #expect(e.next(after: secondPass0210, timeZone: Self.berlin) == firstPass + 3600)
        // A minutely event steps through the first pass and then continues after it.
        let m = try CalendarEvent(parsing: "*:*")
        #expect(m.next(after: 1_635_641_940, timeZone: Self.berlin) == 1_635_645_600)  // 02:59 CEST → 03:00 CET
        #expect(m.next(after: secondPass0210, timeZone: Self.berlin) == secondPass0210 + 60)
    }

    // MARK: - Parsing

    /// `description` is the parsed text; equality follows the text.
    @Test func descriptionIsTheText() throws {
        for text in Self.examples {
            #expect(try CalendarEvent(parsing: text).description == text)
        }
        #expect(try CalendarEvent(parsing: "daily") == CalendarEvent(parsing: "daily"))
        #expect(try CalendarEvent(parsing: "daily") != CalendarEvent(parsing: "hourly"))
    }

    /// The parsed components of a few events (`*` is the empty list, `*/n` a repetition).
    @Test func componentsAreParsedLikeProxmox() throws {
        let e = try CalendarEvent(parsing: "sat *-1..7 15:00")
        #expect(e.days == 0b010_0000 && e.year == [] && e.month == [] && e.day == [.range(1, 7)])
        #expect(e.hour == [.single(15)] && e.minute == [.single(0)] && e.second == [.single(0)])
        let r = try CalendarEvent(parsing: "*:0/15")
        #expect(r.hour == [] && r.minute == [.repeated(0, 15, nil)] && r.second == [.single(0)])
        let m = try CalendarEvent(parsing: "30")  // minutes only: every oneHour
        #expect(m.hour == [] && m.minute == [.single(30)])
        let s = try CalendarEvent(parsing: "*/2-*/3-*/5 4..10/2:*:1,2")
        #expect(s.year == [.repeated(0, 2, nil)] && s.month == [.repeated(1, 3, nil)] && s.day == [.repeated(1, 5, nil)])
        #expect(s.hour == [.repeated(4, 2, 10)] && s.minute == [] && s.second == [.single(1), .single(2)])
        #expect(try CalendarEvent(parsing: "daily UTC").utc)
        #expect(try CalendarEvent(parsing: "mon 2:00UTC").utc)
        #expect(try !CalendarEvent(parsing: "daily").utc)
    }

    /// PVE (proxmox-time) accepts an out-of-range oneHour by reading the time as minutes:seconds.
    @Test func outOfRangeHourIsMinutesSeconds() throws {
        let quirk = try CalendarEvent(parsing: "sun 25:00")
        let plain = try CalendarEvent(parsing: "sun *:25:00")
        #expect(quirk.hour == plain.hour && quirk.minute == plain.minute && quirk.second == plain.second)
        #expect(quirk.next(after: 0, timeZone: Self.utc) == 260_700)  // Sunday 1970-01-04 00:25:00
    }

    /// Each malformed event's error names the event, the bad part and its column.
    @Test("Malformed events name the bad part", arguments: [
        ("foo 03:00", "unknown weekday 'foo'"),
        ("mon..", "unexpected '..'"),
        ("mon..tux 3:00", "unknown weekday 'tux'"),
        ("sun 25:61", "61 is too large (at most 59)"),
        ("sun 24:60:00", "60 is too large (at most 59)"),
        ("2026-13-01", "13 is too large (at most 12)"),
        ("2026-12-32 08:00", "32 is too large (at most 31)"),
        ("10..5:00", "range start 10 is bigger than its end 5"),
        ("*/0", "unexpected '/0'"),
        ("mon 3:00 x", "unexpected ' x'"),
        ("daily ", "unknown weekday 'daily'"),
        ("Daily", "unknown weekday 'Daily'"),
        ("", "expected a weekday, date or time"),
        ("3:00 utc", "unexpected ' utc'"),
    ])
    func malformed(_ text: String, _ reason: String) {
        #expect {
            try CalendarEvent(parsing: text)
        } throws: { error in
            let message = (error as? CalendarEventError)?.message ?? ""
            return message.contains(reason) && message.contains("'\(text)'") && message.contains("column")
        }
    }

    /// The full message of two errors.
    @Test func errorColumn() {
        #expect(throws: CalendarEventError(message: "invalid calendar event 'sun 25:61': 61 is too large (at most 59) (column 8)")) {
            try CalendarEvent(parsing: "sun 25:61")
        }
        #expect(throws: CalendarEventError(message: "invalid calendar event 'mon..': unexpected '..' (column 4)")) {
            try CalendarEvent(parsing: "mon..")
        }
    }

    /// A past fixed date, a non-finite `after` and an impossible date give nil.
    @Test func neverFiresAgain() throws {
        let e = try CalendarEvent(parsing: "2026-12-24 08:00")
        #expect(e.next(after: 1_798_761_570, timeZone: Self.berlin) == nil)
        #expect(e.next(after: .nan, timeZone: Self.berlin) == nil)
        #expect(e.next(after: .infinity, timeZone: Self.berlin) == nil)
        #expect(try CalendarEvent(parsing: "02-30").next(after: 0, timeZone: Self.berlin) == nil)
    }

    /// Events fire on whole seconds: the next one strictly after a fractional `after`.
    @Test func fractionalAfter() throws {
        let e = try CalendarEvent(parsing: "*:*:*")
        #expect(e.next(after: 10.5, timeZone: Self.utc) == 11)
        #expect(e.next(after: -0.5, timeZone: Self.utc) == 0)
        #expect(e.next(after: 10, timeZone: Self.utc) == 11)
    }

    // MARK: - Properties

    /// Whether the wall-clock fields of `t` in `zone` match the event (decomposed with Calendar,
    /// independently of the implementation's own date arithmetic).
    static func matches(_ e: CalendarEvent, _ t: Double, _ zone: TimeZone) -> Bool {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = e.utc ? utc : zone
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: Date(timeIntervalSince1970: t))
        func ok(_ list: [CalendarValue], _ v: Int?) -> Bool { list.isEmpty || CalendarValue.list(list, contains: Int64(v!)) }
        let weekdayBit = UInt8(1) << UInt8((c.weekday! + 5) % 7)  // Calendar: Sunday = 1
        return ok(e.year, c.year) && ok(e.month, c.month) && ok(e.day, c.day) && ok(e.hour, c.hour)
            && ok(e.minute, c.minute) && ok(e.second, c.second) && (e.days == 0 || e.days & weekdayBit != 0)
    }

    /// Whether `t` is in the second pass of a fall-back overlap (its wall time already happened).
    static func repeatsWallTime(_ t: Double, _ zone: TimeZone) -> Bool {
        let now = zone.secondsFromGMT(for: Date(timeIntervalSince1970: t))
        for back in [1800.0, 3600, 7200] where zone.secondsFromGMT(for: Date(timeIntervalSince1970: t - back)) - now >= Int(back) {
            return true
        }
        return false
    }

    /// Events of the property test (all fire on whole minutes).
    static let propertyEvents = [
        "sun 03:00", "mon..fri 22:30", "*:0/15", "daily", "hourly", "weekly", "monthly", "sat *-1..7 15:00",
        "mon,wed,fri 1:00", "0/2:00", "2:30", "2:*", "*:*", "fri..mon 23:59", "*-*-29..31 0/5:7",
        "2:0/20 UTC", "*-2-29 12:00",
    ]
    /// Zones of the property test: fixed, ±1 h DST, 30-minute DST, DST at midnight.
    static let propertyZones = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
                                "America/Sao_Paulo"]

    /// For random instants (2015–2035, half of them within hours of a DST transition): the next
    /// event is later, matches the event, and no whole minute in between matches (checked up
    /// to 26 hours ahead; all these events fire on whole minutes), except wall times repeated in
    /// a fall-back overlap, which fire once.
    @Test("next(after:) is the first matching time after", arguments: propertyZones)
    func nextIsFirstMatch(_ zoneName: String) throws {
        let zone = try #require(TimeZone(identifier: zoneName))
        var rng = CalendarEventRandom(seed: zoneName.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) })
        var transitions: [Double] = []
        var probe = Date(timeIntervalSince1970: 1_420_070_400)
        while let t = zone.nextDaylightSavingTimeTransition(after: probe), t.timeIntervalSince1970 < 2_051_222_400 {
            transitions.append(t.timeIntervalSince1970)
            probe = t
        }
        for text in Self.propertyEvents {
            let e = try CalendarEvent(parsing: text)
            for _ in 0..<12 {
                let after: Double
                if !transitions.isEmpty, rng.next() % 2 == 0 {
                    after = transitions[Int(rng.next() % UInt64(transitions.count))] + Double(Int(rng.next() % 28_800) - 14_400)
                } else {
                    after = 1_420_070_400 + Double(rng.next() % 631_152_000)
                }
                let next = try #require(e.next(after: after, timeZone: zone), "\(text) after \(after) in \(zoneName)")
                #expect(next > after)
                #expect(next == next.rounded())
                #expect(Self.matches(e, next, zone), "\(text): \(next) does not match (after \(after), \(zoneName))")
                var m = (after / 60).rounded(.down) * 60 + 60
                while m < min(next, after + 26 * 3600) {
                    if Self.matches(e, m, zone), !Self.repeatsWallTime(m, zone) {
                        Issue.record("\(text) after \(after) in \(zoneName): \(m) matches before \(next)")
                        break
                    }
                    m += 60
                }
            }
        }
    }
}

/// A small deterministic random generator (SplitMix64), so property runs are reproducible.
private struct CalendarEventRandom {
    /// The state, advanced by each draw.
    var state: UInt64
    /// A generator starting at `seed`.
    init(seed: UInt64) { state = seed }
    /// The next pseudo-random number.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
