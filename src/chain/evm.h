/* evm: the runtime of an `evm` source (SPEC section 8).
 *
 * One thread per source holds a JSON-RPC connection over herald's client-side
 * WebSocket code (src/ws/ws_client.c): eth_chainId, eth_subscribe to the
 * contract's logs (filtered by address and the configured events' topic0) and,
 * with confirmations, to new heads; after every (re)connect a backfill by
 * eth_getLogs from the stored cursor in chunks of backfill_max_range. Replies are
 * matched by id; notifications that arrive while a reply is awaited are queued.
 *
 * Each log is decoded (src/chain/abi.c) and published once per (block hash, log
 * index), in (block, log index) order; `removed: true` publishes removed_event
 * for a log that was published. With confirmations N a log waits until the head
 * is N blocks past it. The connection is retried with exponential backoff and
 * jitter (250 ms doubling to 30 s); a publish that fails ends the session too, so
 * the backfill after the reconnect tries it again.
 *
 * Owns: the thread and its connection. */
#ifndef HERALD_EVM_H
#define HERALD_EVM_H

struct source;

int evm_start(struct source *src);
/* Waits for the thread (it notices sources_t.stop within about a second). */
void evm_stop(struct source *src);

#endif
