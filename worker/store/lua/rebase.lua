-- Give a counter a new epoch because Redis went back in time within the old one.
--
-- A failover can drop the last states a master published before its replica
-- had them. Workers that already showed those states see seq go down within
-- the epoch; they call this so that every client gets told of the rewrite
-- instead. The total and seq stay as Redis now holds them.
--
-- KEYS[1]  the counter's state hash
-- ARGV[1]  the counter's channel
-- ARGV[2]  the publish command: PUBLISH, or SPUBLISH on a Redis Cluster
-- ARGV[3]  the epoch that went back in time
-- ARGV[4]  a fresh random epoch
--
-- Only the first worker to ask changes the epoch; later calls for the same old
-- epoch change nothing. Returns the current state as 'EPOCH SEQ TOTAL'.
local state, channel, publish, old_epoch, fresh_epoch = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local fields = redis.call('HMGET', state, 'epoch', 'seq', 'total')
if fields[1] ~= old_epoch then
    if not fields[1] then return false end
    return encode_state(fields[1], tonumber(fields[2]), fields[3])
end
redis.call('HSET', state, 'epoch', fresh_epoch)
local payload = encode_state(fresh_epoch, tonumber(fields[2]), fields[3])
redis.call(publish, channel, payload)
return payload
