//! Fault injection.
//!
//! A [`Fault`] targets the next N requests of one API key, on one broker or on
//! any broker, and says what happens to them: an error code in the response, a
//! delay before answering, a connection closed without applying the request, or
//! a connection closed after applying it (the write happens, the response is
//! lost). The `FaultRegistry` holds the armed faults; the connection loop asks
//! it once per request.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Handle the request normally (useful together with a delay).
    Respond,
    /// Do not apply the request; answer with this error code in every
    /// error field the response has.
    Error(i16),
    /// Close the connection without applying the request or answering.
    DropConnection,
    /// Apply the request, then close the connection without answering.
    DropAfterApply,
}

/// A fault to inject into the next matching requests.
///
/// ```
/// use kafka_protocol::ResponseError;
/// use kafka_protocol::messages::ApiKey;
/// use protocol_tests::Fault;
///
/// let fault = Fault::new(ApiKey::Produce)
///     .broker(2)
///     .error(ResponseError::NotLeaderOrFollower)
///     .times(1);
/// # let _ = fault;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub(crate) api_key: ApiKey,
    pub(crate) broker: Option<i32>,
    pub(crate) remaining: u32,
    pub(crate) delay: Option<Duration>,
    pub(crate) action: FaultAction,
}

impl Fault {
    /// A fault on the next request of `api_key` on any broker that answers it
    /// normally; refine it with the other methods.
    pub fn new(api_key: ApiKey) -> Self {
        Self {
            api_key,
            broker: None,
            remaining: 1,
            delay: None,
            action: FaultAction::Respond,
        }
    }

    /// Only match requests received by broker `broker_id`.
    pub fn broker(mut self, broker_id: i32) -> Self {
        self.broker = Some(broker_id);
        self
    }

    /// Match the next `n` requests instead of one.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = n;
        self
    }

    /// Wait `delay` before handling the request.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Answer with `error` instead of applying the request.
    pub fn error(self, error: ResponseError) -> Self {
        self.error_code(error.code())
    }

    /// Answer with the raw error code `code` instead of applying the request.
    pub fn error_code(mut self, code: i16) -> Self {
        self.action = FaultAction::Error(code);
        self
    }

    /// Close the connection without applying or answering the request.
    pub fn drop_connection(mut self) -> Self {
        self.action = FaultAction::DropConnection;
        self
    }

    /// Apply the request, then close the connection without answering.
    pub fn drop_after_apply(mut self) -> Self {
        self.action = FaultAction::DropAfterApply;
        self
    }
}

/// What the connection loop must do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Triggered {
    pub delay: Option<Duration>,
    pub action: FaultAction,
}

/// The armed faults, consumed in the order they were injected.
#[derive(Debug, Default)]
pub(crate) struct FaultRegistry {
    faults: Vec<Fault>,
    triggered: u64,
}

impl FaultRegistry {
    /// Arms `fault`. A fault with `times(0)` is ignored.
    pub fn push(&mut self, fault: Fault) {
        if fault.remaining > 0 {
            self.faults.push(fault);
        }
    }

    /// Consumes one use of the first fault matching this request, if any.
    pub fn take(&mut self, broker_id: i32, api_key: ApiKey) -> Option<Triggered> {
        let index = self
            .faults
            .iter()
            .position(|f| f.api_key == api_key && f.broker.is_none_or(|b| b == broker_id))?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let triggered = Triggered {
            delay: fault.delay,
            action: fault.action,
        };
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        self.triggered += 1;
        Some(triggered)
    }

    /// How many armed uses are left over all faults.
    pub fn pending(&self) -> u64 {
        self.faults.iter().map(|f| u64::from(f.remaining)).sum()
    }

    /// How many requests faults have been applied to so far.
    pub fn triggered(&self) -> u64 {
        self.triggered
    }

    /// Disarms every fault.
    pub fn clear(&mut self) {
        self.faults.clear();
    }
}
