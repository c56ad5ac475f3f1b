#pragma once
// The counterpoint engine: agent graphs scheduled on oneTBB flow graphs.
#include "counterpoint/agent.hpp"
#include "counterpoint/batch.hpp"
#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/event.hpp"
#include "counterpoint/graph_spec.hpp"
#include "counterpoint/payload.hpp"
#include "counterpoint/plan.hpp"
#include "counterpoint/policy.hpp"
#include "counterpoint/run.hpp"
#include "counterpoint/runtime.hpp"
#include "counterpoint/thread_pool.hpp"
