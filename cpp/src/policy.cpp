#include "counterpoint/policy.hpp"

namespace counterpoint {

bool RetryPolicy::should_retry(const Failure& failure) const {
  switch (failure.kind) {
    case FailureKind::CircuitOpen:  // fails fast until the breaker lets a probe through
    case FailureKind::Budget:       // the run's budget stays spent
    case FailureKind::Rejected:     // a reviewer's verdict is final
      return false;
    case FailureKind::Timeout:
      if (timeouts == RetryTimeouts::Never) return false;
      if (timeouts == RetryTimeouts::Always) return true;
      return !retry_on || retry_on(failure);
    case FailureKind::Error:
      return !retry_on || retry_on(failure);
  }
  return false;
}

}  // namespace counterpoint
