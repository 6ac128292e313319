-- Publish a counter's current state on its channel, creating it if absent.
--
-- A worker calls this after (re)subscribing: the state then reaches it through
-- the subscription itself, ordered after every update published before it, so
-- a snapshot can never be overtaken by an older update.
--
-- KEYS[1]  the counter's state hash
-- ARGV[1]  the counter's channel
-- ARGV[2]  the publish command: PUBLISH, or SPUBLISH on a Redis Cluster
-- ARGV[3]  a fresh random epoch, used only if the counter has no state yet
--
-- No shebang, on purpose: with Redis at maxmemory this still publishes the
-- state of an existing counter (only a new counter's HSET is refused), so
-- clients keep getting totals while increments are refused.
local state, channel, publish, fresh_epoch = KEYS[1], ARGV[1], ARGV[2], ARGV[3]

local epoch = redis.call('HGET', state, 'epoch')
if not epoch then
    epoch = fresh_epoch
    redis.call('HSET', state, 'epoch', epoch, 'seq', '0', 'total', '0')
end
local fields = redis.call('HMGET', state, 'seq', 'total')
local payload = encode_state(epoch, tonumber(fields[1]), fields[2])
redis.call(publish, channel, payload)
return payload
