-- Send a counter's held state once the publish interval has passed (see
-- publish_bounded in state.lua). A worker whose increment was 'held' calls this
-- when the interval is over, so the newest state always goes out.
--
-- KEYS[1]  the counter's state hash
-- ARGV[1]  the counter's channel
-- ARGV[2]  the publish command: PUBLISH, or SPUBLISH on a Redis Cluster
-- ARGV[3]  the least ms between two publishes
-- ARGV[4]  '1' to send it now whatever the interval (a worker stopping)
--
-- Returns 0 when nothing is held any more (sent now, or already sent by any
-- worker's step), else the ms left until it may be sent.
--
-- No shebang, as for announce.lua: with Redis at maxmemory the publish still
-- goes out, and only the HSET that records it is refused.
local state, channel, publish, interval = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local now_anyway = ARGV[4] == '1'

if redis.call('HGET', state, 'due') ~= '1' then
    return 0
end
local ms = now_ms()
local last_ms = tonumber(redis.call('HGET', state, 'pub') or '0')
if not now_anyway and ms >= last_ms and ms - last_ms < interval then
    return interval - (ms - last_ms)
end
local fields = redis.call('HMGET', state, 'epoch', 'seq', 'total')
redis.call(publish, channel, encode_update(encode_state(fields[1], tonumber(fields[2]), fields[3])))
-- pcall: at maxmemory the record is refused; the state went out all the same,
-- and the next increment's step publishes afresh.
redis.pcall('HSET', state, 'pub', string.format('%d', ms), 'due', '0')
return 0
