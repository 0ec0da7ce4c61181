#![recursion_limit = "256"]
//! Money conservation, proven by simulation (issue 25; DESIGN.md "Third
//! stage"). Random lifecycles of many users at once run against the real
//! handlers, the PayPal and VirtFusion stand-ins and DynamoDB Local
//! (`integration_tests::sim`); after every step the touched accounts' chains
//! and records are checked, at rest every purchase's value is checked
//! against what PayPal kept, to the cent.
//!
//! A new seed each run, printed. `SIM_SEED` pins it, `SIM_LIFECYCLES` sets
//! the budget, `SIM_WORLD_SIZE` the users sharing one table and stand-ins,
//! `SIM_PARALLEL` the worlds run at once, `SIM_SKIP` leaves step kinds out
//! (e.g. `SIM_SKIP=admin_refund,win_dispute`), `SIM_SHRINK_RUNS` bounds
//! shrinking. `infra/simulate.sh [LIFECYCLES] [SEED]` runs more.

use integration_tests::sim::world::World;
use integration_tests::sim::{self, Options, Step, check};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const DEFAULT_LIFECYCLES: usize = 48;
const DEFAULT_WORLD_SIZE: usize = 8;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A failing world: where it failed, why, and what it did.
struct Failure {
    at: String,
    error: String,
    trace: Vec<String>,
}

/// Runs `steps` on a fresh world of `users` users.
async fn run_world(users: usize, steps: &[Step]) -> Result<(), Failure> {
    let mut world = World::new(users).await;
    let fail = |world: &World, at: String, error: String| Failure {
        at,
        error,
        trace: world.trace.clone(),
    };
    for (i, step) in steps.iter().enumerate() {
        world.trace.push(format!("#{i} {step}"));
        if let Err(error) = world.step(*step).await {
            return Err(fail(&world, format!("step #{i}"), error));
        }
        let touched: Vec<usize> = match step.user() {
            Some(u) => vec![u % users],
            None => (0..users).collect(),
        };
        if let Err(error) = check::after_step(&world, &touched).await {
            return Err(fail(&world, format!("after step #{i}"), error));
        }
    }
    world.trace.push("-- at rest".into());
    if let Err(error) = check::quiesce(&mut world).await {
        return Err(fail(&world, "at rest".into(), error));
    }
    Ok(())
}

fn new_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    sim::Rng::new(nanos ^ u64::from(std::process::id())).next_u64() >> 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_conserved_across_random_lifecycles() {
    let seed: u64 = env_or("SIM_SEED", new_seed());
    let lifecycles: usize = env_or("SIM_LIFECYCLES", DEFAULT_LIFECYCLES).max(1);
    let world_size: usize = env_or("SIM_WORLD_SIZE", DEFAULT_WORLD_SIZE).max(1);
    let parallel: usize = env_or("SIM_PARALLEL", 3).max(1);
    let shrink_runs: usize = env_or("SIM_SHRINK_RUNS", 60);
    let options = Options::from_env();
    println!(
        "simulator: seed {seed}, {lifecycles} lifecycles in worlds of {world_size} \
         (replay: SIM_SEED={seed} SIM_LIFECYCLES={lifecycles} SIM_WORLD_SIZE={world_size} \
         cargo test -p integration-tests --test simulator -- --nocapture)"
    );
    let started = Instant::now();
    let worlds = lifecycles.div_ceil(world_size);
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    let mut total_steps = 0;
    for index in 0..worlds {
        let users = world_size.min(lifecycles - index * world_size);
        let world_seed = sim::world_seed(seed, index);
        let steps = sim::generate(world_seed, users, &options);
        total_steps += steps.len();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let outcome = run_world(users, &steps).await;
            (index, world_seed, users, steps, outcome)
        });
    }
    let mut failures = Vec::new();
    let mut finished = 0;
    while let Some(done) = tasks.join_next().await {
        let (index, world_seed, users, steps, outcome) = done.expect("world task");
        if let Err(failure) = outcome {
            // Said at once: a long run's first failure is worth replaying now.
            println!(
                "simulator: world {index} failed {} (replay: SIM_SEED={world_seed}                  SIM_LIFECYCLES={users} SIM_WORLD_SIZE={users}): {}",
                failure.at, failure.error
            );
            failures.push((index, world_seed, users, steps, failure));
        }
        finished += 1;
        // Progress of a long run (infra/simulate.sh), every 25 worlds.
        if finished % 25 == 0 {
            println!(
                "simulator: {finished}/{worlds} worlds, {:.0}s, {} failing",
                started.elapsed().as_secs_f64(),
                failures.len()
            );
        }
    }
    println!(
        "simulator: {lifecycles} lifecycles, {total_steps} steps in {worlds} worlds, {:.1}s, {} failing",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    failures.sort_by_key(|f| f.0);
    let mut report = String::new();
    for (index, world_seed, users, _, failure) in &failures {
        report.push_str(&format!(
            "\nworld {index} (seed {world_seed}, {users} users) failed {}: {}",
            failure.at, failure.error
        ));
    }
    // Shrink the first failure to a minimal sequence of the same category.
    let (_, world_seed, users, steps, failure) = failures.remove(0);
    let category = check::category(&failure.error).to_owned();
    let original = steps.len();
    let (shrunk, runs) = sim::shrink(steps, shrink_runs, |candidate| {
        let category = category.clone();
        async move {
            match run_world(users, &candidate).await {
                Err(f) => check::category(&f.error) == category,
                Ok(()) => false,
            }
        }
    })
    .await;
    let last = run_world(users, &shrunk).await.err();
    report.push_str(&format!(
        "\n\nshrunk world seed {world_seed} from {original} to {} steps in {runs} runs:\n",
        shrunk.len()
    ));
    for (i, step) in shrunk.iter().enumerate() {
        report.push_str(&format!("  #{i} {step}\n"));
    }
    let last = last.unwrap_or(failure);
    report.push_str(&format!("failing {}: {}\ntrace:\n", last.at, last.error));
    for line in &last.trace {
        report.push_str(&format!("  {line}\n"));
    }
    report.push_str(&format!(
        "\nreplay: SIM_SEED={world_seed} SIM_LIFECYCLES={users} SIM_WORLD_SIZE={users} \
         cargo test -p integration-tests --test simulator -- --nocapture\n"
    ));
    panic!("money conservation failed{report}");
}
