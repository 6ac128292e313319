-- The one place Lua writes a counter's state: 'EPOCH SEQ TOTAL', and on the
-- channel after an update 'EPOCH SEQ TOTAL MS' (the publish time on Redis'
-- clock, in ms), which lets every worker measure its fan-out lag. worker/core/state.py reads it;
-- tests/test_state.py holds both to the same examples. This file is put in
-- front of every script, so each sees encode_state, encode_update, now_ms
-- and publish_bounded.
local function encode_state(epoch, seq, total)
    return epoch .. ' ' .. string.format('%d', seq) .. ' ' .. total
end

-- Redis' clock, in whole ms.
local function now_ms()
    local now = redis.call('TIME')
    return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

local function encode_update(encoded_state)
    return encoded_state .. ' ' .. string.format('%d', now_ms())
end


-- Publish a counter's state at most once per `interval` ms (0: every time).
-- Returns 'sent' when it went out now, or 'held' when the interval since the
-- last publish has not passed: the hash's field 'due' then says a state waits,
-- and flush.lua sends the newest once the interval is over. A clock that went
-- back (a failover to a node whose clock is behind) counts as the interval over.
local function publish_bounded(state, channel, publish, encoded, interval)
    if interval > 0 then
        local ms = now_ms()
        local last_ms = tonumber(redis.call('HGET', state, 'pub') or '0')
        if ms >= last_ms and ms - last_ms < interval then
            redis.call('HSET', state, 'due', '1')
            return 'held'
        end
        redis.call('HSET', state, 'pub', string.format('%d', ms), 'due', '0')
    end
    redis.call(publish, channel, encode_update(encoded))
    return 'sent'
end
