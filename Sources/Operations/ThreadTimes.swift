import Foundation

/// How much of the cores each thread of this process has had, and how long it waited for one, from the kernel's
/// scheduler statistics (/proc/self/task/*/schedstat: nanoseconds on a core, nanoseconds runnable but waiting for a
/// core, times put on a core) with each thread's kernel name (/proc/self/task/*/comm). Unlike a rate, the CPU time a thread spends per tick
/// hardly moves with the neighbours' load on a shared machine, so it tells which part of the chain a change made
/// cheaper.
public struct ThreadTimes: Sendable {
    public struct Thread: Sendable, Equatable {
        public var name: String
        public var runNs: UInt64
        public var waitNs: UInt64
        /// Times the thread was put on a core (each wake-up is one, and so is each return after being preempted).
        public var runs: UInt64
    }

    /// By thread id.
    public var threads: [Int: Thread]

    /// Every thread of this process now; empty where the kernel keeps no scheduler statistics.
    public static func now() -> ThreadTimes {
        var threads: [Int: Thread] = [:]
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        for task in tasks {
            guard let id = Int(task),
                let schedstat = try? String(contentsOfFile: "/proc/self/task/\(task)/schedstat", encoding: .utf8)
            else { continue }
            let fields = schedstat.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            guard fields.count >= 3 else { continue }
            let name = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            threads[id] = Thread(name: name, runNs: fields[0], waitNs: fields[1], runs: fields[2])
        }
        return ThreadTimes(threads: threads)
    }

    /// Each thread's use since `earlier`, by thread id (a thread started since counts from nothing; one that ended
    /// meanwhile is not counted).
    public func since(_ earlier: ThreadTimes) -> [Int: Thread] {
        Dictionary(uniqueKeysWithValues: threads.map { id, now in
            let before = earlier.threads[id]
            return (id, Thread(name: now.name, runNs: now.runNs &- (before?.runNs ?? 0),
                waitNs: now.waitNs &- (before?.waitNs ?? 0), runs: now.runs &- (before?.runs ?? 0)))
        })
    }

    /// The calling thread's id, to tell it apart in `threads` (/proc/thread-self links to "PID/task/TID"; Glibc's
    /// module does not export gettid); -1 where there is no such link.
    public static var currentThreadID: Int {
        let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
        return link.split(separator: "/").last.flatMap { Int($0) } ?? -1
    }
}
