-- The one place Lua writes a counter's state: 'EPOCH SEQ TOTAL', and on the
-- channel after an update 'EPOCH SEQ TOTAL MS' (the publish time on Redis'
-- clock, in ms), which lets every worker measure its fan-out lag. worker/core/state.py reads it;
-- tests/test_state.py holds both to the same examples. This file is put in
-- front of every script, so each sees encode_state and encode_update.
local function encode_state(epoch, seq, total)
    return epoch .. ' ' .. string.format('%d', seq) .. ' ' .. total
end

local function encode_update(encoded_state)
    local now = redis.call('TIME')
    local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    return encoded_state .. ' ' .. string.format('%d', ms)
end

