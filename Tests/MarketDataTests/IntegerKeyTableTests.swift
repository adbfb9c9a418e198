import Testing

@testable import MarketData

/// The open-addressing table behind feedd's orders and plantd's short symbols, checked against plain Swift
/// dictionaries over long random sequences, where a wrong probe, shift or drain shows up as a mismatch.
@Suite struct IntegerKeyTableTests {

    @Test func integerKeyTableMatchesADictionaryThroughGrowthAndDeletes() {
        var random = SplitMix64(seed: 7)
        var table = IntegerKeyTable<UInt32>()
        var model: [UInt64: UInt32] = [:]
        // Keys from a narrow range collide and cluster, which exercises backward-shift deletion; a few huge ones
        // check that the hash uses the high bits.
        for step in 0..<200_000 {
            let key = step % 97 == 0 ? UInt64.max - UInt64.random(in: 0..<4, using: &random)
                : UInt64.random(in: 0..<5_000, using: &random)
            switch UInt8.random(in: 0..<10, using: &random) {
            case 0..<5:
                let value = UInt32(truncatingIfNeeded: step)
                table[key] = value
                model[key] = value
            case 5..<8:
                #expect(table.removeValue(forKey: key) == model.removeValue(forKey: key))
            default:
                let changed = table.update(key) { $0 &+= 1 }
                #expect(changed == (model[key] != nil))
                if changed { model[key]! &+= 1 }
            }
            if step % 1_000 == 0 {
                #expect(table.count == model.count)
                for probe in 0..<5_000 as Range<UInt64> where table[probe] != model[probe] {
                    let found = String(describing: table[probe])
                    Issue.record("key \(probe): table \(found), model \(String(describing: model[probe]))")
                    return
                }
            }
        }
        #expect(table.count == model.count)
        var visited: [UInt64: UInt32] = [:]
        table.updateEach { key, value in
            visited[key] = value
            value &+= 7
        }
        #expect(visited == model)
        #expect(model.allSatisfy { key, value in table[key] == value &+ 7 })
    }

    /// After each growth the table drains its old slots a few per insert, looks keys up in both, and unmaps the
    /// drained old slots' pages as it goes (a lookup that read one would crash). Grown to a quarter of a million keys
    /// from 16 slots, with removals, updates and lookups of present and absent keys throughout, it must agree with a
    /// dictionary at every step; a copy taken mid-drain must keep its own keys while the original goes on changing.
    @Test func integerKeyTableMatchesADictionaryWhileItDrainsAfterGrowing() {
        var random = SplitMix64(seed: 11)
        var table = IntegerKeyTable<UInt32>()
        var model: [UInt64: UInt32] = [:]
        var everInserted: [UInt64] = []
        var stepsWhileDraining = 0
        var growths = 0
        var copy: (table: IntegerKeyTable<UInt32>, model: [UInt64: UInt32])?
        for step in 0..<600_000 {
            let action = UInt8.random(in: 0..<10, using: &random)
            let key = action < 6 || everInserted.isEmpty
                ? UInt64.random(in: 0..<(1 << 40), using: &random)
                : everInserted[Int.random(in: 0..<everInserted.count, using: &random)]
            let capacityBefore = table.capacity
            switch action {
            case 0..<6:
                let value = UInt32(truncatingIfNeeded: step)
                table[key] = value
                model[key] = value
                everInserted.append(key)
            case 6..<8:
                let removed = table.removeValue(forKey: key)
                let expected = model.removeValue(forKey: key)
                if removed != expected {
                    let gave = String(describing: removed)
                    Issue.record("step \(step): removing \(key) gave \(gave), not \(String(describing: expected))")
                }
            case 8:
                let changed = table.update(key) { $0 &+= 1 }
                if changed != (model[key] != nil) { Issue.record("step \(step): update of \(key) said \(changed)") }
                if changed { model[key]! &+= 1 }
            default:
                let absent = UInt64.random(in: 0..<(1 << 40), using: &random)
                if table[key] != model[key] || table[absent] != model[absent] {
                    Issue.record("step \(step): lookups of \(key) and \(absent) differ from the model")
                    return
                }
            }
            if table.capacity > capacityBefore { growths += 1 }
            if table.isDraining {
                stepsWhileDraining += 1
                if copy == nil && table.count > 100_000 { copy = (table, model) }
            }
            if step % 50_000 == 0 && model.contains(where: { table[$0.key] != $0.value }) {
                Issue.record("step \(step): a key's value differs from the model")
                return
            }
        }
        #expect(table.count == model.count)
        #expect(growths >= 14 && stepsWhileDraining > 10_000)
        #expect(model.allSatisfy { table[$0.key] == $0.value })
        var visited: [UInt64: UInt32] = [:]
        table.updateEach { key, value in visited[key] = value }
        #expect(visited == model)
        guard var copy else {
            Issue.record("no copy was taken while the table drained")
            return
        }
        #expect(copy.table.count == copy.model.count && copy.model.allSatisfy { copy.table[$0.key] == $0.value })
        // The copy changes on its own too, through its own drain.
        for key in UInt64(1 << 41)..<UInt64(1 << 41) + 50_000 {
            copy.table[key] = 1
            copy.model[key] = 1
        }
        #expect(copy.model.allSatisfy { copy.table[$0.key] == $0.value } && copy.table.count == copy.model.count)
        #expect(model.allSatisfy { table[$0.key] == $0.value })
    }

    /// A key drained into the new slots and then removed must not be found again in the old ones: drained slots are
    /// marked vacated (not left holding their key, which only the newest run of drained slots could still reach).
    @Test func aKeyRemovedRightAfterItsSlotDrainedStaysRemoved() {
        var table = IntegerKeyTable<UInt32>(minimumCapacity: 512)
        for key in 0..<UInt64(513) { table[key] = UInt32(key) }
        #expect(table.isDraining, "513 keys in a table made for 512 did not grow")
        // The old slots' keys by index, read without keeping a reference to them (that would make the table copy
        // its slots on the next change, and the test would watch the copy).
        let holding = IntegerKeyTable<UInt32>.SlotState.holding
        let oldKeys: [UInt64?] = table.draining.map { old in
            (0..<old.count).map { old.base[$0].state == holding ? old.base[$0].key : nil }
        } ?? []
        var removed = 0
        var nextKey: UInt64 = 1_000_000
        while table.isDraining {
            let drainedBefore = table.drainedUpTo
            table[nextKey] = 0
            nextKey += 1
            for index in drainedBefore..<(table.isDraining ? table.drainedUpTo : oldKeys.count) {
                guard let key = oldKeys[index] else { continue }
                #expect(table.removeValue(forKey: key) == UInt32(key))
                #expect(table[key] == nil, "key \(key), drained from old slot \(index) and removed, is still found")
                removed += 1
            }
        }
        #expect(removed == 513 && table.count == Int(nextKey - 1_000_000))
    }
}
