//! How running guests share the cores.
//!
//! Every guest yields to the async runtime at each epoch tick (10 ms), so the
//! runtime round-robins between the calls that run. Two gates keep that round
//! short under load, so that a time limit measures the call and not the crowd:
//!
//! - **Starting.** A top-level call (a tool call, a Python run) starts when one
//!   of the *run slots* (4 per core) is free, first come first served, and its
//!   time limit counts from then. Past that many calls, the rest wait their turn
//!   instead of all slowing each other down.
//!   A call that waits on the host (an HTTP request, a tool it calls) gives its
//!   run slot back, so slow networks do not hold back the calls behind it.
//! - **Running long.** A call that has run for more than [`LONG`] (not counting
//!   its waits for a core) gives its run slot back and goes on only while it holds
//!   one of the *long-call slots* (one per core); after each further [`LONG`] of
//!   running it gives that back for the next long call in line. So a few guests
//!   spinning until their time limit never take the turns of hundreds of short
//!   ones; their time limit (wall time) still ends them where it would have.
//!
//! Calls made by a guest (a tool called from Python, a linked import) pass both
//! gates: their caller is not running while it waits for them. Guest code that
//! runs outside a call (a runner's instantiation) takes no slot, so an instance
//! waiting idle (in a session, in the warm pool) holds none.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a call runs before it needs a long-call slot, and how long it keeps one.
pub const LONG: Duration = Duration::from_millis(100);

/// Run slots per core.
const RUNS_PER_CORE: usize = 4;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Top-level calls that may run at once.
static RUNS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(RUNS_PER_CORE * cores())));

/// One long-call slot per core.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(cores())));

/// A run slot, held from the start of a top-level call until it ends, runs long
/// or waits on the host. Never read: dropping it frees the slot.
pub struct Admission(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Admission {
    /// No run slot: for work the host does in the background (warming instances).
    pub fn none() -> Self {
        Self(None)
    }
}

/// Top-level calls waiting for a run slot (for the metrics).
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits for a run slot; calls made by a guest (`depth > 0`) need none.
pub async fn admit(depth: u32) -> Admission {
    if depth > 0 {
        return Admission(None);
    }
    use std::sync::atomic::Ordering;
    WAITING.fetch_add(1, Ordering::Relaxed);
    // Counted out also when the caller stops waiting (the future is dropped).
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let waiting = Waiting;
    let permit = RUNS.clone().acquire_owned().await.ok();
    drop(waiting);
    Admission(permit)
}

/// (run slots held, calls waiting for one), now.
pub fn occupancy() -> (usize, usize) {
    let total = RUNS_PER_CORE * cores();
    let free = RUNS.available_permits();
    (
        total.saturating_sub(free),
        WAITING.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// A future the guest waits on before it goes on.
pub type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The turn of one store's current call.
pub struct Turn {
    /// Whether this store takes slots (top-level calls only).
    gated: bool,
    /// Between [`Turn::begin`] and [`Turn::end`]: only a call takes slots. Guest
    /// code that runs outside one (a runner's instantiation) takes none, so an
    /// instance that then waits idle (in a session, in the pool) holds none.
    in_call: bool,
    /// The run slot of the current call, until it runs long.
    admission: Admission,
    /// How long the current call (or run) has been going, less the time it
    /// waited at ticks for a core or a slot (host calls count: they are its own).
    ran: Duration,
    /// When the guest last went on after a yield.
    resumed: Arc<Mutex<Instant>>,
    /// The slot it holds, and how long it had run when it got it.
    slot: Arc<Mutex<Option<(OwnedSemaphorePermit, Duration)>>>,
}

impl Turn {
    /// A turn for a store at call depth `depth`.
    pub fn new(depth: u32) -> Self {
        Self {
            gated: depth == 0,
            in_call: false,
            admission: Admission(None),
            ran: Duration::ZERO,
            resumed: Arc::new(Mutex::new(Instant::now())),
            slot: Default::default(),
        }
    }

    /// Starts counting a new call, which got `admission`.
    pub fn begin(&mut self, admission: Admission) {
        self.end();
        self.admission = admission;
        self.in_call = true;
        self.ran = Duration::ZERO;
        *self.resumed.lock().unwrap() = Instant::now();
    }

    /// Gives the run slot back: the call is about to wait on the host (an HTTP
    /// request, a tool it calls), which can take long without using a core.
    pub fn waits_on_host(&mut self) {
        self.admission = Admission(None);
    }

    /// Gives the slots back: the call is over.
    pub fn end(&mut self) {
        self.in_call = false;
        self.admission = Admission(None);
        self.slot.lock().unwrap().take();
    }

    /// At an epoch tick: what the guest waits for before it goes on. Always a
    /// yield to the runtime; first a slot, for a long call whose turn is over or
    /// that has none yet.
    pub fn tick(&mut self, now: Instant) -> Wait {
        let resumed = self.resumed.clone();
        self.ran += now.saturating_duration_since(*resumed.lock().unwrap());
        if self.ran >= LONG {
            self.admission = Admission(None);
        }
        let needs_slot = self.gated && self.in_call && self.ran >= LONG && {
            let mut held = self.slot.lock().unwrap();
            match &*held {
                Some((_, since)) if self.ran - *since < LONG => false,
                _ => {
                    // Back in line: the next long call gets the slot.
                    held.take();
                    true
                }
            }
        };
        let (slot, ran) = (self.slot.clone(), self.ran);
        Box::pin(async move {
            if needs_slot && let Ok(permit) = SLOTS.clone().acquire_owned().await {
                *slot.lock().unwrap() = Some((permit, ran));
            }
            yield_once().await;
            *resumed.lock().unwrap() = Instant::now();
        })
    }
}

/// Goes to the back of the runtime's run queue once: the yield wasmtime's own
/// `UpdateDeadline::Yield` makes.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds_slot(turn: &Turn) -> bool {
        turn.slot.lock().unwrap().is_some()
    }

    /// How long the call had run when it got its long-call slot.
    fn slot_since(turn: &Turn) -> Duration {
        turn.slot.lock().unwrap().as_ref().map(|(_, s)| *s).unwrap()
    }

    /// The slots are the process's: one test at a time counts them.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    #[tokio::test]
    async fn a_long_call_gives_its_run_slot_back_and_takes_turns_on_a_long_slot() {
        let _one = ONE_AT_A_TIME.lock().await;
        let mut turn = Turn::new(0);
        let free = RUNS.available_permits();
        turn.begin(admit(0).await);
        assert_eq!(RUNS.available_permits(), free - 1);
        let start = *turn.resumed.lock().unwrap();
        // Short so far: a plain yield, the run slot kept.
        turn.tick(start + LONG / 2).await;
        assert!(!holds_slot(&turn));
        assert_eq!(RUNS.available_permits(), free - 1);
        // Past LONG of running: the run slot goes back and a long-call slot is taken.
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + LONG).await;
        assert_eq!(RUNS.available_permits(), free);
        assert!(holds_slot(&turn));
        let since = slot_since(&turn);
        // Within its turn it keeps the slot...
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + LONG / 2).await;
        assert_eq!(slot_since(&turn), since);
        // ...which lasts LONG of running; then it goes back in line (and, alone, gets one again).
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + LONG).await;
        let again = slot_since(&turn);
        assert!(again >= since + LONG);
        turn.end();
        assert!(!holds_slot(&turn));
        assert_eq!(RUNS.available_permits(), free);
    }

    /// A store's guest code that runs outside a call (a runner's instantiation,
    /// slow on a crowded machine) took a long-call slot that the idle session
    /// then held: with two such sessions alive, every long call after them
    /// waited forever for a slot.
    #[tokio::test]
    async fn guest_code_outside_a_call_takes_no_slot() {
        let _one = ONE_AT_A_TIME.lock().await;
        let free = SLOTS.available_permits();
        let mut turn = Turn::new(0);
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + 3 * LONG).await;
        assert!(!holds_slot(&turn));
        assert_eq!(SLOTS.available_permits(), free);
        // A call that ran long and ended holds none either.
        turn.begin(admit(0).await);
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + LONG).await;
        assert!(holds_slot(&turn));
        turn.end();
        let resumed = *turn.resumed.lock().unwrap();
        turn.tick(resumed + 3 * LONG).await;
        assert!(!holds_slot(&turn));
        assert_eq!(SLOTS.available_permits(), free);
    }

    #[tokio::test]
    async fn calls_made_by_a_guest_and_host_waits_take_no_slot() {
        let _one = ONE_AT_A_TIME.lock().await;
        let free = RUNS.available_permits();
        let mut nested = Turn::new(1);
        nested.begin(admit(1).await);
        assert_eq!(RUNS.available_permits(), free);
        let resumed = *nested.resumed.lock().unwrap();
        nested.tick(resumed + 3 * LONG).await;
        assert!(!holds_slot(&nested));

        let mut top = Turn::new(0);
        top.begin(admit(0).await);
        assert_eq!(RUNS.available_permits(), free - 1);
        top.waits_on_host();
        assert_eq!(RUNS.available_permits(), free);
    }
}
