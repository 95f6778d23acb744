import Foundation
import XCTest
import BERT
import DISTILL
@testable import ZooCore
@testable import zoo

/// `zoo table` on a tiny base and a tiny RTE: cells made, cached, and the same table through a plan
/// run by GNU parallel and by Slurm.
final class TableTests: XCTestCase {
    static func tinyBase(seed: UInt64 = 9) throws -> URL {
        let base = try tempDir().appendingPathComponent("base")
        try randomStore(.bert(vocab: 12, hidden: 16, layers: 4, heads: 2, ffn: 32, positions: 16), seed: seed)
            .writeCheckpoint(to: base, base: try Checkpoint(dir: try Tiny.checkpoint()))
        return base
    }

    func json(_ url: URL) throws -> [String: Any] { try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any] }

    /// Three rows (the fine-tuned base, heads pruned, then 8-bit on top of the pruned model) on one
    /// task: each cell's score is `zoo eval`'s on its directory; a second run redoes nothing and
    /// writes the same table, and so does a run killed midway and started again; the plan's cells
    /// run through `parallel -j 2`, or as a Slurm array job, and collected give the same table.json
    /// as the serial run.
    func testCellsCachedAndPlanThroughParallelAndSlurm() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), base = try TableTests.tinyBase()
        let common = ["table", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--variants", "bert,heads40,heads40+qbert-int8",
                      "--data", glue.path, "--threads", "2", "--no-speed"]
        let serial = try tempDir().appendingPathComponent("serial")
        var r = try zoo(common + ["--out", serial.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("| heads40+qbert-int8 |"), r.out)
        let table = try json(serial.appendingPathComponent("table.json"))
        let rows = table["rows"] as! [[String: Any]]
        XCTAssertEqual(rows.map { $0["row"] as! String }, ["bert", "heads40", "heads40+qbert-int8"])
        XCTAssertEqual((table["missing"] as! [String]), [])
        // Cost (table.md only: table.json is the same whoever made the cells): each step's recorded
        // seconds under its method, bert's step once although three rows read it.
        let seconds = { (chain: String) in try self.json(serial.appendingPathComponent("cells/rte/seed-7/\(chain)/step.json"))["seconds"] as! Double }
        let setup = try TableCommand.setup(try Arguments(Array(common.dropFirst()) + ["--out", serial.path], options: TableCommand.options, flags: TableCommand.flags))
        let cost = TableCommand.cost(setup, cells: Dictionary(uniqueKeysWithValues: rows.map { ("rte/7/\($0["row"] as! String)", $0) }))
        XCTAssertEqual(cost, ["bert": try seconds("bert"), "heads40": try seconds("bert+heads40"), "qbert-int8": try seconds("bert+heads40+qbert-int8")])
        XCTAssertTrue(try String(contentsOf: serial.appendingPathComponent("table.md"), encoding: .utf8)
            .contains(String(format: "Cost of the made cells: %.1f hours", cost.values.reduce(0, +) / 3600)))
        for (row, chain, variant) in [("bert", "bert", "bert"), ("heads40", "bert+heads40", "pruned"), ("heads40+qbert-int8", "bert+heads40+qbert-int8", "qbert-int8")] {
            let dir = serial.appendingPathComponent("cells/rte/seed-7/\(chain)")
            let e = try tempDir().appendingPathComponent("e.json")
            r = try zoo(["eval", variant, "--task", "rte", "--weights", dir.path, "--data", glue.path, "--json", e.path])
            XCTAssertEqual(r.code, 0, r.stderr)
            let scores = (rows.first { $0["row"] as! String == row }!["scores"] as! [String: [Double]])["rte"]!
            XCTAssertEqual(scores, [try json(e)["score"] as! Double], row)
        }
        XCTAssertEqual(try Checkpoint(dir: serial.appendingPathComponent("cells/rte/seed-7/bert+heads40")).spec.layers.map(\.heads).reduce(0, +), 5)
        // A made step keeps its model, not its training checkpoint (zoo finetune leaves one in its --out).
        let files = FileManager.default.enumerator(atPath: serial.path)!.compactMap { $0 as? String }
        XCTAssertEqual(files.filter { $0.hasSuffix("/model.safetensors") }.count, 3, "\(files)")
        XCTAssertEqual(files.filter { $0.hasSuffix(Trainer.checkpointFile) }, [])
        let plot = try String(contentsOf: serial.appendingPathComponent("score-parameters.svg"), encoding: .utf8)
        XCTAssertEqual(plot.components(separatedBy: "<circle").count - 1, 3)
        XCTAssertFalse(FileManager.default.fileExists(atPath: serial.appendingPathComponent("score-speed.svg").path), "--no-speed: no speed plot")
        let before = try Data(contentsOf: serial.appendingPathComponent("table.json"))
        r = try zoo(common + ["--out", serial.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("zoo finetune") || r.stderr.contains("zoo prune"), "a finished cell is never redone: \(r.stderr)")
        XCTAssertEqual(try Data(contentsOf: serial.appendingPathComponent("table.json")), before)

        // zoo search: the most accurate row within a budget, latencies measured once then cached.
        let search = ["search", "--task", "rte", "--base", base.path, "--seeds", "7", "--variants", "bert,heads40,heads40+qbert-int8", "--out", serial.path,
                      "--rounds", "1", "--batch", "2", "--seq", "8", "--threads", "2"]
        r = try zoo(search + ["--latency-ms", "100000"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let best = rows.max { ($0["mean"] as! Double) < ($1["mean"] as! Double) }!["row"] as! String
        XCTAssertTrue(r.out.contains("best within 100000.00 ms: \(best) "), r.out)
        XCTAssertEqual(r.stderr.components(separatedBy: "measured ").count - 1, 3, r.stderr)
        r = try zoo(search + ["--latency-ms", "0.000001"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("no row runs within"), r.stderr)
        XCTAssertFalse(r.stderr.contains("measured "), "latencies are cached: \(r.stderr)")
        for other in [["--limit", "5"], ["--finetune-epochs", "1"]] {
            r = try zoo(search + ["--latency-ms", "100000"] + other)
            XCTAssertEqual(r.code, 1, "cells of another \(other[0]) are not this search's")
            XCTAssertTrue(r.stderr.contains("no finished cell for RTE"), r.stderr)
        }

        // Killed (SIGKILL) after the first cell and run again: the finished step is kept, the table the same.
        let killed = try tempDir().appendingPathComponent("killed")
        XCTAssertTrue(try killedMidway(common + ["--out", killed.path], after: killed.appendingPathComponent("cells/rte/seed-7/bert/step.json"),
                                       finished: killed.appendingPathComponent("table.json"), delays: [200, 50, 800, 10, 0]), "could not interrupt zoo table")
        r = try zoo(common + ["--out", killed.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("rte/7/bert: done"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: killed.appendingPathComponent("table.json")), before)

        // zoo eval ROW without --task: that row of the table beside bert, from the cached cells.
        r = try zoo(["eval", "heads40", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--data", glue.path, "--threads", "2",
                     "--no-speed", "--out", serial.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("zoo finetune") || r.stderr.contains("zoo prune"), "cached cells reused: \(r.stderr)")
        let evalRows = try json(serial.appendingPathComponent("table.json"))["rows"] as! [[String: Any]]
        XCTAssertEqual(evalRows.map { $0["row"] as! String }, ["bert", "heads40"])
        XCTAssertEqual(evalRows[1]["scores"] as? [String: [Double]], rows[1]["scores"] as? [String: [Double]])
        XCTAssertTrue(r.out.contains("| heads40 |"), r.out)
        // --finetune-epochs reaches the table: the bert cell recorded without it is another command's.
        r = try zoo(["eval", "heads40", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--data", glue.path, "--threads", "2",
                     "--no-speed", "--out", serial.path, "--finetune-epochs", "1"])
        XCTAssertEqual(r.code, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("seed-7/bert/step.json: made by another command"), r.stderr)

        // --collect takes a cell only when every step of it is recorded with this table's command:
        // with another --limit, bert's is not, and so no cell (all three start from it).
        r = try zoo(common + ["--out", serial.path, "--limit", "40", "--collect"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("Not made yet (or made by another command or base): rte/7/bert, rte/7/heads40, rte/7/heads40+qbert-int8"), r.out)

        let planned = try tempDir().appendingPathComponent("planned")
        r = try zoo(common + ["--out", planned.path, "--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let cells = planned.appendingPathComponent("plan/cells.txt")
        XCTAssertEqual(try String(contentsOf: cells, encoding: .utf8).split(separator: "\n").count, 3)
        XCTAssertTrue(try String(contentsOf: planned.appendingPathComponent("plan/table.sbatch"), encoding: .utf8).contains("#SBATCH --array=1-3"))
        // The collect command the plan prints is the plan's own (its rows, tasks and seeds).
        let then = r.out.split(separator: "\n").first { $0.contains("then:") }!.components(separatedBy: "then:")[1].trimmingCharacters(in: .whitespaces)
        XCTAssertTrue(then.hasPrefix("'zoo' 'table' ") && then.contains("'--variants' 'bert,heads40,heads40+qbert-int8'") && then.hasSuffix(" '--collect'"), then)
        XCTAssertEqual(try shell("parallel -j 2 < '\(cells.path)'"), 0, "parallel -j 2 < cells.txt")
        XCTAssertEqual(try shell("'\(Paths.zoo.path)'" + then.dropFirst("'zoo'".count)), 0, then)
        XCTAssertEqual(try Data(contentsOf: planned.appendingPathComponent("table.json")), before, "the parallel run's table is the serial run's")

        // The same plan as a Slurm array job on a real single-node cluster (slurmctld, slurmd and
        // munged on localhost, started here and stopped after: tools/slurm_local.sh).
        let cluster = try tempDir(), slurm = Paths.root.appendingPathComponent("tools/slurm_local.sh").path
        XCTAssertEqual(try shell("'\(slurm)' start '\(cluster.path)' >/dev/null"), 0, "a local Slurm cluster (logs in \(cluster.path)/log)")
        defer { _ = try? shell("'\(slurm)' stop '\(cluster.path)'") }
        let sbatched = try tempDir().appendingPathComponent("sbatched")
        r = try zoo(common + ["--out", sbatched.path, "--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try shell("SLURM_CONF='\(cluster.path)/slurm.conf' sbatch --wait '\(sbatched.path)/plan/table.sbatch' >/dev/null"), 0, "sbatch --wait")
        r = try zoo(common + ["--out", sbatched.path, "--collect"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: sbatched.appendingPathComponent("table.json")), before, "the Slurm run's table is the serial run's")
    }

    /// The cells' records alone (what git keeps of a table under results/, see .gitignore), copied to
    /// another folder: the table made there is the same and nothing is redone. With the stacked
    /// step's record removed, the steps it starts from are made again for their weights (not kept),
    /// then it, and the table is the same again.
    func testRecordsWithoutTheirWeights() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), base = try TableTests.tinyBase()
        let common = ["table", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--variants", "bert,heads40+qbert-int8",
                      "--data", glue.path, "--threads", "2", "--no-speed"]
        let first = try tempDir().appendingPathComponent("first"), kept = try tempDir().appendingPathComponent("kept")
        var r = try zoo(common + ["--out", first.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        let rows = { (out: URL) in try self.json(out.appendingPathComponent("table.json"))["rows"] as! [[String: Any]] }
        let scores = { (out: URL) in try rows(out).map { "\($0["row"]!) \($0["scores"]!)" } }
        let expected = try scores(first)
        XCTAssertEqual(expected.count, 2)
        for chain in ["bert", "bert+heads40", "bert+heads40+qbert-int8"] {
            let dir = kept.appendingPathComponent("cells/rte/seed-7/\(chain)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: first.appendingPathComponent("cells/rte/seed-7/\(chain)/step.json"), to: dir.appendingPathComponent("step.json"))
        }
        let recorded = try json(kept.appendingPathComponent("cells/rte/seed-7/bert+heads40/step.json"))["command"] as! [String]
        XCTAssertEqual(recorded[...2], ["prune", "--weights", "$OUT/cells/rte/seed-7/bert"], "paths under --out are recorded relative to it")
        r = try zoo(common + ["--out", kept.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains(": zoo "), "nothing redone: \(r.stderr)")
        XCTAssertEqual(try scores(kept), expected)

        try FileManager.default.removeItem(at: kept.appendingPathComponent("cells/rte/seed-7/bert+heads40+qbert-int8"))
        r = try zoo(common + ["--out", kept.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        for step in ["bert", "bert+heads40"] {
            XCTAssertTrue(r.stderr.contains("rte/7/\(step): recorded, but its weights are not in"), r.stderr)
        }
        for command in ["zoo finetune", "zoo prune", "zoo quantize"] { XCTAssertTrue(r.stderr.contains(command), "\(command) ran: \(r.stderr)") }
        XCTAssertEqual(try scores(kept), expected)

        // The records name the base by its sha256: another base with the same --out is refused, by
        // a run and by --collect (which then lists the cells as not made).
        XCTAssertEqual(try json(first.appendingPathComponent("cells/rte/seed-7/bert/step.json"))["base"] as? String,
                       try Fetch.sha256(base.appendingPathComponent("model.safetensors")))
        let other = try TableTests.tinyBase(seed: 10)
        let withOther = common.map { $0 == base.path ? other.path : $0 } + ["--out", first.path]
        r = try zoo(withOther)
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.stderr.contains("cells/rte/seed-7/bert/step.json: made from another base"), r.stderr)
        r = try zoo(withOther + ["--collect"])
        XCTAssertTrue(r.out.contains("Not made yet (or made by another command or base): rte/7/bert, rte/7/heads40+qbert-int8"), r.out)
    }

    func shell(_ command: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Speed on the real cells and at another geometry (tinybert-4l here; bert-base by default): each
    /// method's shape at that scale — the pruned model's per-layer head fractions, DistilBERT's share
    /// of the layers, 8-bit on top of the pruned shape — as random weights measured against the
    /// geometry's dense model; qbert-mixed (its bits come from a trained model's Hessian) and the
    /// BiLSTM (no transformer checkpoint at all) have no such model and show —.
    func testSpeedAtAnotherGeometry() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), base = try TableTests.tinyBase(), out = try tempDir().appendingPathComponent("t")
        let r = try zoo(["table", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--variants", "bert,heads40,distilbert,qbert-mixed,bilstm-soft,heads40+qbert-int8",
                         "--data", glue.path, "--threads", "2", "--rounds", "1", "--speed-geometry", "tinybert-4l", "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("Speed at the tinybert-4l geometry"), r.out)
        XCTAssertTrue(r.out.contains("| qbert-mixed | — | — | — |"), r.out)
        XCTAssertTrue(r.out.contains("| bilstm-soft | — | — | — |"), r.out)
        let rows = try json(out.appendingPathComponent("table.json"))["rows"] as! [[String: Any]]
        func geo(_ row: String) -> [String: Any]? { rows.first { $0["row"] as! String == row }!["speed_tinybert-4l"] as? [String: Any] }
        for row in ["heads40", "distilbert", "heads40+qbert-int8"] {
            let g = try XCTUnwrap(geo(row), row)
            XCTAssertGreaterThan(g["b1_speedup"] as! Double, 0, row)
            XCTAssertGreaterThan(g["b32_speedup"] as! Double, 0, row)
            XCTAssertEqual(g["geometry"] as? String, "tinybert-4l")
            XCTAssertNotNil(rows.first { $0["row"] as! String == row }!["speed"] as? [String: Any], "the real cells' speed too: \(row)")
        }
        XCTAssertNil(geo("qbert-mixed"))
        XCTAssertNil(geo("bilstm-soft"))
        XCTAssertNotNil(rows.first { $0["row"] as! String == "bilstm-soft" }!["speed"] as? [String: Any], "the BiLSTM's real speed")
        // tinybert-4l has 12 heads per layer; the pruned tiny model keeps h of its 2 heads in layer l.
        let pruned = try Checkpoint(dir: out.appendingPathComponent("cells/rte/seed-7/bert+heads40")).spec.layers.map(\.heads)
        XCTAssertEqual(geo("heads40")!["heads"] as? [Int], pruned.map { 12 * $0 / 2 })
        XCTAssertEqual(geo("heads40+qbert-int8")!["heads"] as? [Int], pruned.map { 12 * $0 / 2 })
        XCTAssertEqual(geo("distilbert")!["layers"] as? Int, 2, "every other of the tiny base's 4 layers: 2 of tinybert-4l's 4")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("geometry/tinybert-4l/heads40").path), "random weights removed after")

        // The speeds are kept per CPU and thread count: --collect at the same --threads shows them, at another none.
        let collect = ["table", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--variants", "bert,heads40", "--data", glue.path,
                       "--rounds", "1", "--speed-geometry", "tinybert-4l", "--out", out.path, "--collect"]
        for (threads, cached) in [("2", true), ("1", false)] {
            let c = try zoo(collect + ["--threads", threads])
            XCTAssertEqual(c.code, 0, c.stderr)
            let row = (try json(out.appendingPathComponent("table.json"))["rows"] as! [[String: Any]]).first { $0["row"] as! String == "heads40" }!
            XCTAssertEqual(row["speed"] is [String: Any], cached, "--threads \(threads)")
            XCTAssertEqual(row["speed_tinybert-4l"] is [String: Any], cached, "--threads \(threads)")
        }
    }

    /// Plot labels start right of their point, except one that would run past the figure's right
    /// edge, which ends left of it; points on one pixel share a label; the front is the points
    /// nothing beats on both axes.
    func testPlotLabelsAndFront() {
        let plot = ScatterPlot(title: "t", xLabel: "x", yLabel: "y",
                               points: [("dense", 1, 70), ("slow-and-bad", 0.9, 60), ("a-long-name-at-the-right-edge", 5, 66),
                                        ("int8", 0.9, 60)], largerXBetter: true)
        XCTAssertEqual(plot.front.map(\.label), ["dense", "a-long-name-at-the-right-edge"])
        let svg = plot.svg().split(separator: "\n").map(String.init), circles = svg.filter { $0.hasPrefix("<circle") }
        func number(_ line: String, _ key: String) -> Double { Double(line.components(separatedBy: "\(key)=\"")[1].prefix { $0 != "\"" })! }
        for (point, label, anchoredAtEnd) in [(0, "dense", false), (2, "a-long-name-at-the-right-edge", true), (1, "slow-and-bad, int8", false)] {
            let text = svg.first { $0.hasSuffix(">\(label)</text>") }!
            XCTAssertEqual(text.contains("text-anchor=\"end\""), anchoredAtEnd, text)
            XCTAssertEqual(number(text, "x") - number(circles[point], "cx"), anchoredAtEnd ? -6 : 6, accuracy: 0.51, text)
        }
        XCTAssertEqual(circles.count, 4)
        XCTAssertFalse(svg.contains { $0.hasSuffix(">int8</text>") })

        // Crowded points (as the table's top right): no two labels overlap, and a label moved off its
        // point has a line to it.
        var crowded: [(label: String, x: Double, y: Double)] = [("far", 5, 40)]
        for i in 0..<8 { crowded.append(("row-\(i)", 1 + 0.01 * Double(i), 70 - 0.05 * Double(i))) }
        let crowd = ScatterPlot(title: "t", xLabel: "x", yLabel: "y", points: crowded, largerXBetter: true)
        let lines = crowd.svg().split(separator: "\n").map(String.init)
        let labels = lines.filter { $0.contains(">row-") || $0.hasSuffix(">far</text>") }.map { (line: String) -> (x0: Double, x1: Double, y: Double) in
            let text = line.components(separatedBy: ">")[1].components(separatedBy: "<")[0]
            let width = 6.2 * Double(text.count), x = number(line, "x"), y = number(line, "y")
            return line.contains("text-anchor=\"end\"") ? (x - width, x, y) : (x, x + width, y)
        }
        XCTAssertEqual(labels.count, 9)
        for (i, a) in labels.enumerated() {
            for b in labels[(i + 1)...] { XCTAssertFalse(a.x0 < b.x1 && b.x0 < a.x1 && abs(a.y - b.y) < 12, "\(a) overlaps \(b)") }
        }
        XCTAssertGreaterThan(lines.filter { $0.hasPrefix("<line") && $0.contains("#bbb") }.count, 0)
    }

    /// Series: a colour each, named above the plot; one teacher's label drawn once, above its highest
    /// point; the line y = x over both axes' common range.
    func testPlotSeriesAndDiagonal() {
        let plot = ScatterPlot(title: "t", xLabel: "teacher", yLabel: "student",
                               points: [("L6", 58, 49.5), ("L6", 58, 40), ("L2", 42, 44), ("L2", 42, 34)], largerXBetter: true,
                               showFront: false, series: ["tinybert", "distilbert", "tinybert", "distilbert"], diagonal: "student = teacher")
        let svg = plot.svg().split(separator: "\n").map(String.init), circles = svg.filter { $0.hasPrefix("<circle") }
        func number(_ line: String, _ key: String) -> Double { Double(line.components(separatedBy: "\(key)=\"")[1].prefix { $0 != "\"" })! }
        func fill(_ line: String) -> String { line.components(separatedBy: "fill=\"")[1].components(separatedBy: "\"")[0] }
        XCTAssertEqual(circles.map(fill), ["#36c", "#e80", "#36c", "#e80"])
        XCTAssertEqual(svg.filter { $0.hasPrefix("<rect x") && $0.contains("width=\"8\"") }.map(fill), ["#36c", "#e80"])
        XCTAssertTrue(svg.contains { $0.hasSuffix(">tinybert</text>") } && svg.contains { $0.hasSuffix(">distilbert</text>") })
        for (label, top) in [("L6", 0), ("L2", 2)] {
            let texts = svg.filter { $0.hasSuffix(">\(label)</text>") }
            XCTAssertEqual(texts.count, 1, label)
            XCTAssertEqual(number(texts[0], "y"), number(circles[top], "cy") - 6, accuracy: 0.51, label)
        }
        // y = x: the line's ends are where points of equal coordinates would be drawn, at both axes'
        // ranges' overlap (each range is its values padded by 8 % of their span).
        let line = svg.first { $0.hasPrefix("<line") && $0.contains("#999") }!
        let (px42, px58) = (number(circles[2], "cx"), number(circles[0], "cx")), (py34, py49) = (number(circles[3], "cy"), number(circles[0], "cy"))
        let pxv = { (v: Double) in px42 + (v - 42) / 16 * (px58 - px42) }, pyv = { (v: Double) in py34 + (v - 34) / 15.5 * (py49 - py34) }
        let lo = max(42 - 16 * 0.08, 34 - 15.5 * 0.08), hi = min(58 + 16 * 0.08, 49.5 + 15.5 * 0.08)
        for (end, v) in [("1", lo), ("2", hi)] {
            XCTAssertEqual(number(line, "x" + end), pxv(v), accuracy: 0.06)
            XCTAssertEqual(number(line, "y" + end), pyv(v), accuracy: 0.06)
        }
        XCTAssertTrue(svg.contains { $0.hasSuffix(">student = teacher</text>") })
    }

    func testErrors() throws {
        let base = try TableTests.tinyBase()
        for (args, message) in [(["--variants", "bert,nope"], "unknown method 'nope' in row 'nope'"),
                                (["--cell", "rte/x/bert"], "--cell takes TASK/SEED/ROW"),
                                (["--speed-geometry", "huge"], "unknown --speed-geometry 'huge'"),
                                (["--variants", "heads40,bert+heads40"], "--variants names heads40 twice"),
                                (["--seeds", "42,43,42"], "--seeds names 42 twice"),
                                (["--finetune-epochs", "0"], "--finetune-epochs takes a whole number in 1..., got '0'")] {
            let r = try zoo(["table", "--base", base.path] + args)
            XCTAssertEqual(r.code, 2, args.joined(separator: " "))
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
        }
    }

    /// A step killed before its first checkpoint leaves its folder and no checkpoint: run again, it
    /// starts from the beginning (with --resume, zoo finetune would find nothing to resume and fail).
    func testStepKilledBeforeItsFirstCheckpoint() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), base = try TableTests.tinyBase(), out = try tempDir()
        let dir = out.appendingPathComponent("cells/rte/seed-7/bert")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir.appendingPathComponent("step.log").path, contents: Data("killed\n".utf8))
        let r = try zoo(["table", "--base", base.path, "--tasks", "rte", "--seeds", "7", "--variants", "bert", "--data", glue.path,
                         "--threads", "2", "--no-speed", "--out", out.path])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("(no checkpoint yet: from the start)"), r.stderr)
        XCTAssertFalse(r.stderr.contains("--resume"), r.stderr)
    }

    /// With a seed missing, a row's % of bert is against bert's scores on the same (task, seed) pairs:
    /// heads40 made on seed 42 only (57) against bert's 60 there, not bert's mean of 60 and 80.
    func testPercentOfBertOnTheSameSeeds() throws {
        let rte = try GLUETask.named("rte"), out = try tempDir()
        let s = TableCommand.Setup(base: "/b", out: out, glue: out, limit: nil, finetuneEpochs: nil, threads: nil, baseSHA: nil,
                                   tasks: [rte], seeds: [42, 43], rows: [try TableCommand.chain("bert"), try TableCommand.chain("heads40")],
                                   argv: [], speedGeometry: nil)
        let cell = { (dev: Double) -> [String: Any] in ["dev": dev, "parameters": 10, "bytes": 40] }
        try TableCommand.write(s, cells: ["rte/42/bert": cell(60), "rte/43/bert": cell(80), "rte/42/heads40": cell(57)], speeds: [:])
        let rows = try json(out.appendingPathComponent("table.json"))["rows"] as! [[String: Any]]
        XCTAssertEqual(rows[0]["percent_of_bert"] as! Double, 100, accuracy: 1e-9)
        XCTAssertEqual(rows[1]["percent_of_bert"] as! Double, 95, accuracy: 1e-9)
        XCTAssertEqual(rows[1]["mean"] as! Double, 57, accuracy: 1e-9)
    }

    /// --finetune-epochs reaches the bert row's `zoo finetune` and nothing else; without it the
    /// command is the one the recorded cells hold.
    func testFinetuneEpochs() throws {
        let bert = BERT.plugin.methods.first { $0.name == "bert" }!
        let input = { (e: Int?) in Method.Input(source: "/b", task: "rte", seed: 7, out: "/o", limit: 1000, finetuneEpochs: e, shared: nil) }
        XCTAssertEqual(bert.make(input(10)), ["finetune", "--base", "/b", "--task", "rte", "--seed", "7", "--out", "/o", "--limit", "1000", "--epochs", "10"])
        XCTAssertEqual(bert.make(input(nil)), ["finetune", "--base", "/b", "--task", "rte", "--seed", "7", "--out", "/o", "--limit", "1000"])
        let distil = DISTILL.plugin.methods.first { $0.name == "distilbert" }!
        XCTAssertFalse(distil.make(input(10)).contains("10"), distil.make(input(10)).joined(separator: " "))
    }
}

/// `zoo study kd-stages`: TinyBERT and its six ablations as zoo table cells (planned here: one real
/// TinyBERT cell costs minutes in a debug build), and the collected summary of what exists.
final class StudyTests: XCTestCase {
    func testKDStagesPlanAndCollect() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 48), base = try TableTests.tinyBase(), out = try tempDir().appendingPathComponent("kd")
        let common = ["study", "kd-stages", "--base", base.path, "--tasks", "rte,mrpc", "--out", out.path, "--data", glue.path]
        var r = try zoo(common + ["--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = try String(contentsOf: out.appendingPathComponent("plan/cells.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2 * 3 * 7)          // tasks × the default three seeds × rows
        for part in ["general", "embedding", "attention", "hidden", "prediction", "augmentation"] {
            XCTAssertEqual(lines.filter { $0.contains("/tinybert-cut-without-\(part)'") }.count, 6, part)
        }
        XCTAssertEqual(lines.filter { $0.contains("/tinybert-cut'") }.count, 6)
        XCTAssertTrue(r.out.contains("then:          'zoo' 'study' 'kd-stages' "), r.out)
        r = try zoo(common + ["--collect"])
        XCTAssertEqual(r.code, 0, r.stderr)
        XCTAssertTrue(r.out.contains("| tinybert-cut | seeds |") && r.out.contains("| full | 0 | — | — |"), r.out)

        // TinyBERT's own random start: the same seven rows of the tinybert methods.
        let random = try tempDir().appendingPathComponent("kd-random")
        r = try zoo(common.map { $0 == out.path ? random.path : $0 } + ["--student", "random", "--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let randomLines = try String(contentsOf: random.appendingPathComponent("plan/cells.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(randomLines.count, 2 * 3 * 7)
        XCTAssertEqual(randomLines.filter { $0.contains("/tinybert-without-hidden'") }.count, 6)
        XCTAssertEqual(randomLines.filter { $0.contains("-cut") }.count, 0)
        r = try zoo(common + ["--student", "big", "--plan"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--student takes cut or random, got 'big'"), r.stderr)
    }

    /// The cut ablations' commands: without the general stage the student is cut from the
    /// fine-tuned teacher; ablations that leave the general stage alone share tinybert-cut's
    /// general student, those that change it have their own (cut from the base).
    func testCutAblationCommands() throws {
        let input = Method.Input(source: "/t", task: "rte", seed: 7, out: "/o", limit: nil, shared: nil)
        let method = { (name: String) in DISTILL.plugin.methods.first { $0.name == name }! }
        let noGeneral = method("tinybert-cut-without-general")
        XCTAssertNil(noGeneral.prepare)
        XCTAssertTrue(noGeneral.make(input).joined(separator: " ").contains("--without general --student-init teacher"), noGeneral.make(input).joined(separator: " "))
        XCTAssertEqual(method("tinybert-cut-without-prediction").shared, "tinybert-cut")
        XCTAssertEqual(method("tinybert-cut-without-augmentation").shared, "tinybert-cut")
        XCTAssertEqual(method("tinybert-without-prediction").shared, "tinybert")
        let hidden = method("tinybert-cut-without-hidden")
        XCTAssertEqual(hidden.shared, "tinybert-cut-without-hidden")
        XCTAssertEqual(hidden.prepare!("/b", 7, "/g", nil).suffix(4), ["--without", "hidden", "--student-init", "teacher"])
    }

    /// A study's per-seed means pair the scores by seed, not by position: with seed 42 missing on one
    /// task, seed 43's mean is over its own scores only, and 42 (not made on every task) has none.
    func testPerSeedPairsBySeed() {
        let row: [String: Any] = ["scores": ["rte": [50.0, 60.0], "mrpc": [80.0]], "seeds": ["rte": [42, 43], "mrpc": [43]]]
        XCTAssertEqual(StudyCommand.perSeed(row), [43: 70.0])
        XCTAssertEqual(StudyCommand.perSeed(["scores": ["rte": [50.0, 60.0]], "seeds": ["rte": [42, 44]]]), [42: 50.0, 44: 60.0])
        XCTAssertEqual(StudyCommand.perSeed(["scores": [String: [Double]]()]), [:])
    }

    /// `zoo study teacher-size` on a tiny 4-layer base: teachers of 4 and 2 layers (the second made of
    /// the base's first two, loading with the base's first two layers' weights), the plan of every
    /// teacher's cells, one real run (one task, one seed, a few examples) and its summary: per
    /// teacher the teacher's and both students' scores, which are the cells' dev scores; --students.
    func testTeacherSize() throws {
        let glue = try FinetuneTests.tinyGLUE(train: 24), base = try TableTests.tinyBase(), out = try tempDir().appendingPathComponent("ts")
        let common = ["study", "teacher-size", "--base", base.path, "--teacher-layers", "4,2", "--tasks", "rte", "--out", out.path,
                      "--data", glue.path, "--threads", "2"]
        var r = try zoo(common + ["--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let lines = try String(contentsOf: out.appendingPathComponent("plan/cells.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2 * 3 * 3)          // teachers × the default three seeds × rows
        XCTAssertEqual(lines.filter { $0.contains("teachers/base-L2") }.count, 9)
        XCTAssertEqual(lines.filter { $0.contains("/tinybert-cut'") }.count, 6, "the default students: tinybert-cut and distilbert")
        XCTAssertEqual(lines.filter { $0.contains("/distilbert'") }.count, 6)
        r = try zoo(common + ["--finetune-epochs", "10", "--plan"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let withEpochs = try String(contentsOf: out.appendingPathComponent("plan/cells.txt"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(withEpochs.filter { $0.contains("'--finetune-epochs' '10'") }.count, 18)
        let two = try Checkpoint(dir: out.appendingPathComponent("teachers/base-L2"))
        XCTAssertEqual(two.spec.layers.count, 2)
        let full = try SafeTensors(url: base.appendingPathComponent("model.safetensors"))
        let name = "bert.encoder.layer.1.attention.self.query.weight"
        XCTAssertEqual(try two.tensors.tensor(name, shape: [16, 16]).array, try full.tensor(name, shape: [16, 16]).array)

        // TinyBERT's random start here: the default tinybert-cut needs a base at least 312 wide.
        r = try zoo(common + ["--seeds", "7", "--limit", "8", "--students", "tinybert,distilbert"])
        XCTAssertEqual(r.code, 0, r.stderr)
        let md = try String(contentsOf: out.appendingPathComponent("teacher-size.md"), encoding: .utf8)
        for (teacher, layers) in [("base-L4", 4), ("base-L2", 2)] {
            let rows = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("\(teacher)/table.json"))) as! [String: Any]
            let score = { (row: String) in ((rows["rows"] as! [[String: Any]]).first { $0["row"] as! String == row }!["scores"] as! [String: [Double]])["rte"]![0] }
            let line = String(format: "| %@ | %d | ", teacher, layers)
            XCTAssertTrue(md.contains(line), md)
            XCTAssertTrue(md.contains(line) && md.components(separatedBy: "\n").first { $0.hasPrefix(line) }!
                .contains(String(format: "| %.2f ± — (1) | %.2f ± — (1) | %.2f ± — (1) |", score("bert"), score("tinybert"), score("distilbert"))), md)
        }
        let svg = try String(contentsOf: out.appendingPathComponent("student-vs-teacher-parameters.svg"), encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 4)
        for label in [">base-L4</text>", ">base-L2</text>", ">tinybert</text>", ">distilbert</text>"] {   // teachers label points, students are the series
            XCTAssertEqual(svg.components(separatedBy: label).count - 1, 1, label)
        }
        XCTAssertTrue(md.hasPrefix("| teacher | layers | parameters | teacher dev | tinybert | distilbert |"), md)
        // The cost over both teachers, a method once (both teachers' steps summed under it).
        let costLine = md.components(separatedBy: "\n").first { $0.hasPrefix("Cost of the made cells: ") }!
        XCTAssertEqual(costLine.components(separatedBy: "minutes by method: ")[1].components(separatedBy: " (all teachers")[0]
            .components(separatedBy: ", ").map { $0.split(separator: " ").dropLast().joined(separator: " ") }.sorted(),
                       ["bert", "distilbert", "tinybert", "tinybert (shared)"], costLine)
        // Made steps keep no training checkpoint, a distillation stage's (one folder down) included.
        let files = FileManager.default.enumerator(atPath: out.path)!.compactMap { $0 as? String }
        XCTAssertGreaterThan(files.filter { $0.hasSuffix("/stage.json") }.count, 4, "\(files)")
        XCTAssertEqual(files.filter { $0.hasSuffix(Trainer.checkpointFile) }, [])
        r = try zoo(common + ["--students", "bert,distilbert", "--plan"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--students takes table rows other than bert"), r.stderr)
        r = try zoo(common + ["--students", "distilbert,distilbert", "--plan"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("--students names distilbert twice"), r.stderr)
        r = try zoo(common + ["--teachers", out.appendingPathComponent("teachers/base-L2").path, "--plan"])
        XCTAssertEqual(r.code, 2)
        XCTAssertTrue(r.stderr.contains("two teachers are named 'base-L2'"), r.stderr)
    }

    /// A point of the teacher-size plots: the teacher's score is its mean over the student's seeds
    /// (here 42, not 42 and 43); one seed has no sd, and the summary shows it as —.
    func testTeacherSizePoint() {
        let p = StudyCommand.point(student: [42: 70], teacher: [42: 80, 43: 60])
        XCTAssertEqual(p.teacher, 80)
        XCTAssertEqual(p.mean, 70)
        XCTAssertNil(p.sd)
        XCTAssertNil(StudyCommand.point(student: [44: 70], teacher: [42: 80]).teacher)
        let two = StudyCommand.point(student: [42: 70, 43: 72], teacher: [42: 80, 43: 60])
        XCTAssertEqual(two.teacher, 70)
        XCTAssertEqual(two.sd!, 2.squareRoot(), accuracy: 1e-12)     // sample sd: sqrt(((−1)² + 1²) / 1)
        XCTAssertEqual(StudyCommand.meanSD([55.6]), "55.60 ± —")
        XCTAssertEqual(StudyCommand.meanSD([1, 2, 3]), "2.00 ± 1.00")
    }
}
