//! The money-conservation simulator (issue 25): random purchase lifecycles of
//! many users at once, driven through the real handlers, the PayPal and
//! VirtFusion stand-ins and DynamoDB Local (`world`), checked against a small
//! model of money owed and paid (`check`). This module draws the steps from a
//! seed and shrinks a failing sequence.
//!
//! Steps name users and purchases by index (`u`, `p` taken modulo what
//! exists when the step runs), so any subsequence of a sequence is a valid
//! sequence: a step whose target does not exist yet does nothing. That is
//! what lets the shrinker delete steps freely.

mod admin;
pub mod check;
pub mod world;

use std::fmt;

/// SplitMix64: small, seedable, the same on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// One of `items` by weight.
    pub fn weighted<T: Copy>(&mut self, items: &[(u64, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| *w).sum();
        let mut roll = self.below(total);
        for (weight, item) in items {
            if roll < *weight {
                return *item;
            }
            roll -= weight;
        }
        items[items.len() - 1].1
    }
}

/// The seed of world `index` of a run seeded `seed` (world 0 is the run's
/// seed itself, so a one-world replay uses the printed seed as is).
pub fn world_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        seed
    } else {
        Rng::new(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
    }
}

/// How PayPal answers the purchase's capture call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMode {
    Answered,
    /// PayPal captures, then its answer never arrives (the client times out).
    LostAfterApplying,
    /// 500 without capturing.
    Failed,
    /// `PENDING`; a later [`Step::SettleCapture`] completes or declines it.
    Pending,
    Declined,
}

/// How VirtFusion answers the first delivery of a token purchase (and, as a
/// fault step, the next calls of anyone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfMode {
    Answered,
    /// 500: it may have applied (review).
    Status500,
    /// 429: surely not applied (pending, retried by the job).
    Busy,
    /// Credits the tokens, then never answers.
    ApplyThenHang,
    /// Refuses connections.
    Refusing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookAction {
    /// The chosen held-back event is delivered (any order: reordered).
    Deliver,
    /// Delivered and kept (PayPal sends it again later).
    Duplicate,
    /// Never delivered.
    Lose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// No retry after a lost answer.
    None,
    /// The same request again, same key.
    Same,
    /// Same key, the reason edited.
    Edited,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Completed,
    Failed,
    Cancelled,
}

/// One step. `u` is a user (lifecycle) index, `p` a purchase index of that
/// user, `r` an index into what exists (refunds, reversals, events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Buy {
        u: usize,
        tokens: bool,
        cents: i64,
        capture: CaptureMode,
        vf: VfMode,
    },
    /// The buyer calls capture again.
    RetryCapture {
        u: usize,
        p: usize,
    },
    /// PayPal settles a `PENDING` capture.
    SettleCapture {
        u: usize,
        p: usize,
        complete: bool,
    },
    Webhook {
        u: usize,
        r: usize,
        action: WebhookAction,
    },
    /// Every held event of the user at once, in order or reversed (held
    /// back, then released).
    FlushWebhooks {
        u: usize,
        reversed: bool,
    },
    /// A refund in PayPal's dashboard: what remains (`percent: None`) or a
    /// share of the capture.
    DashboardRefund {
        u: usize,
        p: usize,
        percent: Option<u8>,
    },
    AdminRefund {
        u: usize,
        p: usize,
        percent: Option<u8>,
        pending: bool,
        lost_answer: bool,
        retry: Retry,
    },
    /// PayPal settles a `PENDING` refund.
    SettleRefund {
        u: usize,
        r: usize,
        outcome: Settle,
    },
    /// A chargeback of what remains of the capture.
    Reverse {
        u: usize,
        p: usize,
    },
    /// The merchant wins the dispute of a chargeback.
    WinDispute {
        u: usize,
        r: usize,
    },
    /// VirtFusion misbehaves for its next `times` calls, whoever makes them.
    VfFault {
        mode: VfMode,
        times: u8,
    },
    DeliveryJob,
    SettleReviews,
    Reconcile,
    AdminCredits {
        u: usize,
        cents: i64,
        grant: bool,
    },
    AdminTokenGrant {
        u: usize,
        tokens: i64,
        lost_answer: bool,
    },
    AdminTokenRemove {
        u: usize,
        r: usize,
    },
    ServiceCharge {
        u: usize,
        cents: i64,
        retried: bool,
    },
    DnsPurchase {
        u: usize,
        plan: u8,
    },
}

impl Step {
    /// A short name per kind, for `SIM_SKIP`.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Buy { .. } => "buy",
            Step::RetryCapture { .. } => "retry_capture",
            Step::SettleCapture { .. } => "settle_capture",
            Step::Webhook { .. } => "webhook",
            Step::FlushWebhooks { .. } => "flush_webhooks",
            Step::DashboardRefund { .. } => "dashboard_refund",
            Step::AdminRefund { .. } => "admin_refund",
            Step::SettleRefund { .. } => "settle_refund",
            Step::Reverse { .. } => "reverse",
            Step::WinDispute { .. } => "win_dispute",
            Step::VfFault { .. } => "vf_fault",
            Step::DeliveryJob => "delivery_job",
            Step::SettleReviews => "settle_reviews",
            Step::Reconcile => "reconcile",
            Step::AdminCredits { .. } => "admin_credits",
            Step::AdminTokenGrant { .. } => "admin_token_grant",
            Step::AdminTokenRemove { .. } => "admin_token_remove",
            Step::ServiceCharge { .. } => "service_charge",
            Step::DnsPurchase { .. } => "dns_purchase",
        }
    }

    /// The user a step belongs to, if one.
    pub fn user(&self) -> Option<usize> {
        match *self {
            Step::Buy { u, .. }
            | Step::RetryCapture { u, .. }
            | Step::SettleCapture { u, .. }
            | Step::Webhook { u, .. }
            | Step::FlushWebhooks { u, .. }
            | Step::DashboardRefund { u, .. }
            | Step::AdminRefund { u, .. }
            | Step::SettleRefund { u, .. }
            | Step::Reverse { u, .. }
            | Step::WinDispute { u, .. }
            | Step::AdminCredits { u, .. }
            | Step::AdminTokenGrant { u, .. }
            | Step::AdminTokenRemove { u, .. }
            | Step::ServiceCharge { u, .. }
            | Step::DnsPurchase { u, .. } => Some(u),
            Step::VfFault { .. } | Step::DeliveryJob | Step::SettleReviews | Step::Reconcile => {
                None
            }
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// What the generator may draw (`SIM_SKIP` removes kinds).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub skip: Vec<String>,
}

impl Options {
    pub fn from_env() -> Options {
        let skip = std::env::var("SIM_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        Options { skip }
    }

    fn allows(&self, step: &Step) -> bool {
        !self.skip.iter().any(|s| s == step.kind())
    }
}

const AMOUNTS: [i64; 8] = [100, 250, 500, 1000, 1234, 2000, 5000, 777];

fn percent(rng: &mut Rng) -> Option<u8> {
    if rng.chance(40) {
        None
    } else {
        Some(rng.pick(&[10u8, 25, 33, 50, 75, 90]))
    }
}

/// One step of user `u`'s lifecycle.
fn user_step(rng: &mut Rng, u: usize, first: bool) -> Step {
    let r = rng.index(8);
    let p = rng.index(4);
    if first {
        return buy(rng, u);
    }
    let kind = rng.weighted(&[
        (16, 0u8),
        (5, 1),
        (4, 2),
        (20, 3),
        (7, 4),
        (9, 5),
        (5, 6),
        (4, 7),
        (4, 8),
        (4, 9),
        (2, 10),
        (2, 11),
        (3, 12),
        (2, 13),
        (5, 14),
    ]);
    match kind {
        0 => buy(rng, u),
        1 => Step::RetryCapture { u, p },
        2 => Step::SettleCapture {
            u,
            p,
            complete: rng.chance(75),
        },
        3 => Step::Webhook {
            u,
            r,
            action: rng.weighted(&[
                (70, WebhookAction::Deliver),
                (20, WebhookAction::Duplicate),
                (10, WebhookAction::Lose),
            ]),
        },
        4 => Step::DashboardRefund {
            u,
            p,
            percent: percent(rng),
        },
        5 => {
            let lost_answer = rng.chance(40);
            Step::AdminRefund {
                u,
                p,
                percent: percent(rng),
                pending: rng.chance(30),
                lost_answer,
                retry: if lost_answer {
                    rng.weighted(&[(10, Retry::None), (45, Retry::Same), (45, Retry::Edited)])
                } else {
                    Retry::None
                },
            }
        }
        6 => Step::SettleRefund {
            u,
            r,
            outcome: rng.weighted(&[
                (50, Settle::Completed),
                (25, Settle::Failed),
                (25, Settle::Cancelled),
            ]),
        },
        7 => Step::Reverse { u, p },
        8 => Step::WinDispute { u, r },
        9 => Step::AdminCredits {
            u,
            cents: rng.pick(&[100, 250, 1000, 3000]),
            grant: rng.chance(50),
        },
        10 => Step::AdminTokenGrant {
            u,
            tokens: rng.pick(&[50, 500, 1200]),
            lost_answer: rng.chance(30),
        },
        11 => Step::AdminTokenRemove { u, r },
        12 => Step::ServiceCharge {
            u,
            cents: rng.pick(&[99, 500, 1500]),
            retried: rng.chance(30),
        },
        14 => Step::FlushWebhooks {
            u,
            reversed: rng.chance(50),
        },
        _ => Step::DnsPurchase {
            u,
            plan: rng.pick(&[0u8, 1, 2]),
        },
    }
}

fn buy(rng: &mut Rng, u: usize) -> Step {
    let tokens = rng.chance(50);
    Step::Buy {
        u,
        tokens,
        cents: rng.pick(&AMOUNTS),
        capture: rng.weighted(&[
            (60, CaptureMode::Answered),
            (10, CaptureMode::LostAfterApplying),
            (10, CaptureMode::Failed),
            (15, CaptureMode::Pending),
            (5, CaptureMode::Declined),
        ]),
        vf: if tokens {
            rng.weighted(&[
                (60, VfMode::Answered),
                (10, VfMode::Status500),
                (10, VfMode::Busy),
                (10, VfMode::ApplyThenHang),
                (10, VfMode::Refusing),
            ])
        } else {
            VfMode::Answered
        },
    }
}

fn global_step(rng: &mut Rng) -> Step {
    match rng.weighted(&[(40, 0u8), (25, 1), (20, 2), (15, 3)]) {
        0 => Step::DeliveryJob,
        1 => Step::SettleReviews,
        2 => Step::Reconcile,
        _ => Step::VfFault {
            mode: rng.pick(&[
                VfMode::Status500,
                VfMode::Busy,
                VfMode::ApplyThenHang,
                VfMode::Refusing,
            ]),
            times: 1 + rng.below(2) as u8,
        },
    }
}

/// The steps of `lifecycles` users, interleaved, with the shared steps (jobs,
/// reviews, reconciliation, VirtFusion faults) among them.
pub fn generate(seed: u64, lifecycles: usize, options: &Options) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut per_user: Vec<Vec<Step>> = (0..lifecycles)
        .map(|u| {
            let len = 4 + rng.index(11);
            (0..len)
                .map(|i| user_step(&mut rng, u, i == 0))
                .filter(|s| options.allows(s))
                .collect()
        })
        .collect();
    for steps in &mut per_user {
        steps.reverse();
    }
    let mut out = Vec::new();
    loop {
        let open: Vec<usize> = (0..per_user.len())
            .filter(|&u| !per_user[u].is_empty())
            .collect();
        if open.is_empty() {
            break;
        }
        if rng.chance(8) {
            let step = global_step(&mut rng);
            if options.allows(&step) {
                out.push(step);
            }
        }
        let u = open[rng.index(open.len())];
        if let Some(step) = per_user[u].pop() {
            out.push(step);
        }
    }
    out
}

/// Delta debugging: the smallest subsequence of `steps` for which `fails`
/// still holds that it can find within `budget` runs. `fails` replays a
/// sequence on a fresh world.
pub async fn shrink<F, Fut>(steps: Vec<Step>, budget: usize, mut fails: F) -> (Vec<Step>, usize)
where
    F: FnMut(Vec<Step>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut current = steps;
    let mut runs = 0;
    let mut chunk = current.len().div_ceil(2).max(1);
    while runs < budget {
        let mut removed_any = false;
        let mut start = 0;
        while start < current.len() && runs < budget {
            let end = (start + chunk).min(current.len());
            let mut candidate = current.clone();
            candidate.drain(start..end);
            runs += 1;
            if !candidate.is_empty() && fails(candidate.clone()).await {
                current = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any {
            chunk = (chunk / 2).max(1);
        }
    }
    (current, runs)
}
