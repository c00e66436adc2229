// Runs a synchronous closure on a fresh, short-lived POSIX thread and waits for it.
//
// Used wherever a thread must change per-thread kernel state (setns) without that state
// ever leaking into a thread that Swift concurrency, Dispatch or anyone else reuses. The
// calling thread blocks in pthread_join for the duration, so the closure may borrow the
// caller's non-escaping state and its result need not be Sendable.
// Threading: any thread may call; the closure runs on the new thread only.

#if canImport(Glibc)
import Glibc
#endif

enum DedicatedThread {
    private final class Job {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `body` on a new thread and returns its result once the thread has ended.
    /// Throws `SystemCallError` when the thread cannot be created.
    static func run<T>(_ operation: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        var result: Result<T, any Error>?
        let started: Int32 = withoutActuallyEscaping(body) { escapable in
            withoutActuallyEscaping({ result = Result { try escapable() } }) { work in
                let job = Unmanaged.passRetained(Job(work)).toOpaque()
                var thread = pthread_t()
                let rc = pthread_create(&thread, nil, { context in
                    let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
                    job.body()
                    return nil
                }, job)
                if rc != 0 {
                    Unmanaged<Job>.fromOpaque(job).release()
                    return rc
                }
                pthread_join(thread, nil)
                return 0
            }
        }
        if started != 0 { throw SystemCallError("\(operation()): starting a thread", errno: started) }
        return try result!.get()
    }
}
