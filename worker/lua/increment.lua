-- Apply a batch of increments to one counter, in order, and publish once.
--
-- KEYS[1]  the counter's state hash (fields epoch, seq, total)
-- ARGV[1]  the counter's channel
-- ARGV[2]  a fresh random epoch, used only if the counter has no state yet
-- ARGV[3]  seconds an increment id is remembered
-- ARGV[4]  prefix of the id keys
-- ARGV[5], ARGV[6], ...  pairs of (by, id); id is '' when the client gave none
--
-- Publishes 'EPOCH SEQ TOTAL MS' once, for the last applied increment.
-- Returns one string per increment: 'ok EPOCH SEQ TOTAL', 'dup EPOCH SEQ TOTAL'
-- (the original outcome of that id) or 'err MESSAGE'.
--
-- Totals stay strings: Lua numbers are doubles, exact only up to 2^53, while
-- HINCRBY works on the exact 64-bit integer inside Redis and refuses to
-- overflow. seq is a Lua number but never comes near 2^53.
local state, channel, fresh_epoch, ttl, id_prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local epoch = redis.call('HGET', state, 'epoch')
if not epoch then
    epoch = fresh_epoch
    redis.call('HSET', state, 'epoch', epoch, 'seq', '0', 'total', '0')
end

local results = {}
local last = nil
for i = 5, #ARGV, 2 do
    local by, id = ARGV[i], ARGV[i + 1]
    local id_key = nil
    if id ~= '' then id_key = id_prefix .. id end
    local previous = id_key and redis.call('GET', id_key)
    if previous then
        results[#results + 1] = 'dup ' .. previous
    else
        -- pcall: an overflow must fail this increment alone, not the batch;
        -- redis.call would abort the script after earlier ones were applied.
        local reply = redis.pcall('HINCRBY', state, 'total', by)
        if type(reply) == 'table' and reply.err then
            results[#results + 1] = 'err ' .. reply.err
        else
            local seq = redis.call('HINCRBY', state, 'seq', 1)
            local total = redis.call('HGET', state, 'total')
            last = epoch .. ' ' .. string.format('%d', seq) .. ' ' .. total
            if id_key then redis.call('SET', id_key, last, 'EX', ttl) end
            results[#results + 1] = 'ok ' .. last
        end
    end
end

if last then
    -- The publish time (Redis' clock, in ms) lets every worker measure its
    -- fan-out lag; acks and id keys keep the state alone.
    local now = redis.call('TIME')
    local ms = string.format('%d', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000))
    redis.call('PUBLISH', channel, last .. ' ' .. ms)
end
return results
