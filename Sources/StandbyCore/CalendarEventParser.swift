/// The grammar of ``CalendarEvent``, ported from `proxmox-time` (`calendar_event.rs`,
/// `parse_helpers.rs`, `week_days.rs`; a nom parser there, a backtracking descent here):
///
/// ```
/// event     = keyword [" "* "UTC"]  |  [weekdays " "*] [date " "*] [time] [" "* "UTC"]   (at least one part)
/// keyword   = minutely | hourly | daily | weekly | monthly | yearly | annually | quarterly
///           | semiannually | semi-annually                                    (exact, lower case)
/// weekdays  = wdrange ("," wdrange)*          wdrange = wd [".." wd]   (fri..mon wraps around)
/// wd        = mon | tue | … | sun | monday | … | sunday                      (any case)
/// date      = [years "-"] months "-" days     (years 0–2199, months 1–12, days 1–31)
/// time      = [hours ":"] minutes [":" seconds]   (hours 0–23, minutes/seconds 0–59)
/// list      = "*" | "*/" step | value ("," value)*
/// value     = n | n ".." m | n "/" step | n ".." m "/" step     (n <= m)
/// ```
///
/// Defaults: no time means 00:00:00; no seconds means `:00`; a missing hour field means every
/// hour, so `30` is `*:30:00`. `*/s` starts at 0 for years and times, at 1 for months and days.
/// Keywords: `minutely` = `*:*:00`, `hourly` = `*:00:00`, `daily` = `00:00:00`, `weekly` =
/// `mon 00:00:00`, `monthly` = `*-*-01 00:00:00`, `yearly`/`annually` = `*-01-01 00:00:00`,
/// `quarterly` = `*-1,4,7,10-01 00:00:00`, `semiannually`/`semi-annually` = `*-1,7-01 00:00:00`.
///
/// Quirks kept for fidelity with PVE: an hour that is out of range makes the parser fall back to
/// `minutes:seconds`, so `sun 25:00` is `sun *:25:00` (every hour at minute 25 on Sundays), as
/// PVE accepts it; `UTC` is upper case only; no space is needed between the weekdays and what
/// follows (`mon12:00`); leading or trailing blanks are errors (except blanks before `UTC`).
enum CalendarEventParser {
    /// Parses `text` into an event, or says what is wrong and where.
    static func parse(_ text: String) throws(CalendarEventError) -> CalendarEvent {
        var state = State(bytes: Array(text.utf8))
        var utc = false
        if state.bytes.count >= 3, state.bytes.suffix(3).elementsEqual("UTC".utf8) {
            utc = true
            state.bytes.removeLast(3)
            while state.bytes.last == UInt8(ascii: " ") { state.bytes.removeLast() }
        }
        let s = state.bytes
        func fail(at pos: Int, _ reason: String) -> CalendarEventError {
            let column = String(decoding: s[0..<pos], as: UTF8.self).count + 1
            return CalendarEventError(message: "invalid calendar event '\(text)': \(reason) (column \(column))")
        }
        let zero: [CalendarValue] = [.single(0)]

        var pos = 0
        var days: UInt8 = 0
        var (year, month, day) = ([CalendarValue](), [CalendarValue](), [CalendarValue]())
        var (hour, minute, second) = (zero, zero, zero)
        var hasDays = false, hasDate = false, hasTime = false

        if let first = s.first, isAlpha(first) {
            switch String(decoding: s, as: UTF8.self) {
            case "minutely": return CalendarEvent(text: text, utc: utc, second: zero)
            case "hourly": return CalendarEvent(text: text, utc: utc, second: zero, minute: zero)
            case "daily": return CalendarEvent(text: text, utc: utc, second: zero, minute: zero, hour: zero)
            case "weekly": return CalendarEvent(text: text, utc: utc, days: 1, second: zero, minute: zero, hour: zero)
            case "monthly":
                return CalendarEvent(text: text, utc: utc, second: zero, minute: zero, hour: zero, day: [.single(1)])
            case "yearly", "annually":
                return CalendarEvent(text: text, utc: utc, second: zero, minute: zero, hour: zero, day: [.single(1)],
                                     month: [.single(1)])
            case "quarterly":
                return CalendarEvent(text: text, utc: utc, second: zero, minute: zero, hour: zero, day: [.single(1)],
                                     month: [.single(1), .single(4), .single(7), .single(10)])
            case "semiannually", "semi-annually":
                return CalendarEvent(text: text, utc: utc, second: zero, minute: zero, hour: zero, day: [.single(1)],
                                     month: [.single(1), .single(7)])
            default: break
            }
            guard let (list, p) = state.separatedList(pos, { $0.weekdayRange($1) }) else {
                throw fail(at: state.problem?.position ?? pos, state.problem?.reason ?? "expected a weekday")
            }
            for bits in list { days |= bits }
            hasDays = true
            pos = state.skipBlanks(p)
        }
        if let (d, p) = state.dateSpec(pos) {
            (year, month, day) = d
            hasDate = true
            pos = state.skipBlanks(p)
        }
        if let (t, p) = state.timeSpec(pos) {
            (hour, minute, second) = t
            hasTime = true
            pos = p
        }
        guard hasDays || hasDate || hasTime else {
            if let problem = state.problem, problem.position >= pos { throw fail(at: problem.position, problem.reason) }
            throw fail(at: pos, "expected a weekday, date or time")
        }
        guard pos == s.count else {
            // The leftover text; a bad value found at or after it explains it best.
            if let problem = state.problem, problem.position >= pos { throw fail(at: problem.position, problem.reason) }
            throw fail(at: pos, "unexpected '\(String(decoding: s[pos...], as: UTF8.self))'")
        }
        return CalendarEvent(text: text, utc: utc, days: days, second: second, minute: minute, hour: hour,
                             day: day, month: month, year: year)
    }

    /// Whether `c` is an ASCII letter.
    private static func isAlpha(_ c: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(c)
    }

    /// The input and the furthest bad value seen (for the error message): each rule takes a
    /// position and returns its result and the position after it, or nil (the caller backtracks).
    private struct State {
        /// The text, without the `UTC` suffix.
        var bytes: [UInt8]
        /// The furthest bad value seen so far, reported when the parse fails there or before.
        var problem: (position: Int, reason: String)?

        /// Records a bad value at `position` (a later one replaces an earlier one).
        mutating func note(_ position: Int, _ reason: String) {
            if problem.map({ position >= $0.position }) ?? true { problem = (position, reason) }
        }

        /// Whether the byte at `pos` is `c`.
        func at(_ pos: Int, _ c: Character) -> Bool { pos < bytes.count && bytes[pos] == c.asciiValue! }

        /// The position after any spaces and tabs at `pos` (nom's `space0`).
        func skipBlanks(_ pos: Int) -> Int {
            var p = pos
            while p < bytes.count, bytes[p] == UInt8(ascii: " ") || bytes[p] == UInt8(ascii: "\t") { p += 1 }
            return p
        }

        /// `item ("," item)*`; a separator not followed by an item is left unparsed.
        mutating func separatedList<T>(_ pos: Int, _ item: (inout State, Int) -> (T, Int)?) -> ([T], Int)? {
            guard let (first, p0) = item(&self, pos) else { return nil }
            var list = [first], p = p0
            while at(p, ","), let (next, q) = item(&self, p + 1) {
                list.append(next)
                p = q
            }
            return (list, p)
        }

        /// A weekday name: its bit (Monday = 1 … Sunday = 64).
        mutating func weekday(_ pos: Int) -> (UInt8, Int)? {
            var p = pos
            while p < bytes.count, CalendarEventParser.isAlpha(bytes[p]) { p += 1 }
            guard p > pos else { return nil }
            let name = String(decoding: bytes[pos..<p], as: UTF8.self)
            let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            let full = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
            guard let i = names.firstIndex(of: name.lowercased()) ?? full.firstIndex(of: name.lowercased()) else {
                note(pos, "unknown weekday '\(name)'")
                return nil
            }
            return (1 << i, p)
        }

        /// `wd` or `wd..wd` (a range that wraps past Sunday, `fri..mon`, is allowed).
        mutating func weekdayRange(_ pos: Int) -> (UInt8, Int)? {
            guard let (start, p) = weekday(pos) else { return nil }
            guard at(p, "."), at(p + 1, "."), let (end, q) = weekday(p + 2) else { return (start, p) }
            func span(_ a: UInt8, _ b: UInt8) -> UInt8 {  // bits a through b
                var bits: UInt8 = 0, x = a
                while true { bits |= x; if x >= b { break }; x <<= 1 }
                return bits
            }
            return (start > end ? span(start, 64) | span(1, end) : span(start, end), q)
        }

        /// A decimal number below `max` (`parse_time_comp`).
        mutating func number(_ pos: Int, below max: Int64) -> (Int64, Int)? {
            var p = pos, value: Int64 = 0
            while p < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[p]) {
                if value <= Int64(UInt32.max) { value = value * 10 + Int64(bytes[p] - UInt8(ascii: "0")) }
                p += 1
            }
            guard p > pos else { return nil }
            guard value < max else {
                let digits = String(decoding: bytes[pos..<p], as: UTF8.self)
                note(pos, "\(digits) is too large (at most \(max - 1))")
                return nil
            }
            return (value, p)
        }

        /// `n`, `n..m`, `n/step` or `n..m/step` (`parse_date_time_comp`).
        mutating func value(_ pos: Int, below max: Int64) -> (CalendarValue, Int)? {
            guard let (start, p) = number(pos, below: max) else { return nil }
            if at(p, "."), at(p + 1, "."), let (end, q) = number(p + 2, below: max) {
                guard start <= end else {
                    note(pos, "range start \(start) is bigger than its end \(end)")
                    return nil
                }
                guard at(q, "/") else { return (.range(start, end), q) }
                guard let (step, r) = number(q + 1, below: max) else { return nil }
                return (.repeated(start, step, end), r)
            }
            guard at(p, "/") else { return (.single(start), p) }
            guard let (step, r) = number(p + 1, below: max) else { return nil }
            return (.repeated(start, step, nil), r)
        }

        /// `*`, `*/step` (from `start`) or a list of values (`parse_date_time_comp_list`); `*` is
        /// the empty list (every value).
        mutating func list(_ pos: Int, start: Int64, below max: Int64) -> ([CalendarValue], Int)? {
            if at(pos, "*") {
                if at(pos + 1, "/") {
                    guard let (step, q) = number(pos + 2, below: max) else { return nil }
                    if step > 0 { return ([.repeated(start, step, nil)], q) }
                }
                return ([], pos + 1)  // `*/0`: the `/0` is left unparsed (an error)
            }
            return separatedList(pos) { $0.value($1, below: max) }
        }

        /// `[hours ":"] minutes [":" seconds]`.
        mutating func timeSpec(_ pos: Int) -> (([CalendarValue], [CalendarValue], [CalendarValue]), Int)? {
            var hour: [CalendarValue] = [], p = pos
            if let (h, q) = list(pos, start: 0, below: 24), at(q, ":") { (hour, p) = (h, q + 1) }
            guard let (minute, q) = list(p, start: 0, below: 60) else { return nil }
            if at(q, ":"), let (second, r) = list(q + 1, start: 0, below: 60) { return ((hour, minute, second), r) }
            return ((hour, minute, [.single(0)]), q)
        }

        /// `years-months-days` or `months-days`.
        mutating func dateSpec(_ pos: Int) -> (([CalendarValue], [CalendarValue], [CalendarValue]), Int)? {
            if let (y, p) = list(pos, start: 0, below: 2200), at(p, "-"),
               let (m, q) = list(p + 1, start: 1, below: 13), at(q, "-"),
               let (d, r) = list(q + 1, start: 1, below: 32) {
                return ((y, m, d), r)
            }
            if let (m, q) = list(pos, start: 1, below: 13), at(q, "-"), let (d, r) = list(q + 1, start: 1, below: 32) {
                return (([], m, d), r)
            }
            return nil
        }
    }
}
