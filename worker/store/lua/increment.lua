#!lua
-- Apply a batch of increments to one counter, in order, and publish once
-- (at most once per ARGV[7] ms: publish_bounded in state.lua).
-- The shebang declares a script that writes: Redis at maxmemory refuses it
-- before it runs (OOM), never halfway, and a read-only replica refuses it too.
--
-- KEYS[1]      the counter's state hash (fields epoch, seq, total)
-- KEYS[2], ... the id keys and session hashes the increments name, each once
-- ARGV[1]      the counter's channel
-- ARGV[2]      the publish command: PUBLISH, or SPUBLISH on a Redis Cluster, where
--              the channel lives on the shard of the counter's slot
-- ARGV[3]      a fresh random epoch, used only if the counter has no state yet
-- ARGV[4]      seconds an increment id is remembered
-- ARGV[5]      seconds an idle session is remembered
-- ARGV[6]      W, how many outcomes a session keeps
-- ARGV[7]      the least ms between two publishes of this counter (0: no bound)
-- ARGV[8], ... triples (by, kind, n): kind '' (bare), 'iK' (the id key KEYS[K])
--              or 'sK' (number n of the session whose hash is KEYS[K])
--
-- Exactly-once with an id: the id key holds the increment's outcome for
-- ARGV[3] seconds; a retry within that time gets it back as 'dup'.
--
-- Exactly-once with a session (Kafka's idempotent producer): the session's
-- hash holds 'next', the number it expects, and the outcomes of its last W
-- numbers, and lives ARGV[4] seconds after its last use. For number n:
--   n == next         apply; keep the outcome under n; forget n - W; next = n + 1
--   next - W <= n < next   a retry: 'dup' with the outcome kept under n
--   n < next - W      a retry too old for its outcome: 'old' (applied, total unknown)
--   n > next          a gap: 'err out_of_order NEXT', nothing applied, because
--                     the client cannot yet know what became of the missing ones
-- A session Redis does not know expects 1, so a resend after it expired is a
-- gap, never a second application. An increment refused for overflow uses up
-- its number (kept as '!'), so a retry is refused the same way.
--
-- Returns one line per increment: 'ok STATE', 'dup STATE', 'old',
-- 'err overflow MESSAGE' or 'err out_of_order NEXT'; then one more line, how
-- the state went out: 'sent', 'held' (flush.lua sends it) or 'none' (unchanged).
--
-- Totals stay strings: Lua numbers are doubles, exact only up to 2^53, while
-- HINCRBY works on the exact 64-bit integer inside Redis and refuses to
-- overflow. seq and n are Lua numbers but never come near 2^53.
local state, channel, publish, fresh_epoch = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local id_ttl, session_ttl, window = ARGV[4], ARGV[5], tonumber(ARGV[6])
local interval = tonumber(ARGV[7])

local epoch = redis.call('HGET', state, 'epoch')
if not epoch then
    epoch = fresh_epoch
    redis.call('HSET', state, 'epoch', epoch, 'seq', '0', 'total', '0')
end

local last = nil

-- The outcome line of applying `by`, and what to keep for a retry.
local function apply(by)
    -- pcall: an overflow must fail this increment alone, not the batch;
    -- redis.call would abort the script after earlier ones were applied.
    -- On a counter's own integer field HINCRBY can fail only by overflow.
    local reply = redis.pcall('HINCRBY', state, 'total', by)
    if type(reply) == 'table' and reply.err then
        return 'err overflow ' .. reply.err, '!'
    end
    local seq = redis.call('HINCRBY', state, 'seq', 1)
    last = encode_state(epoch, seq, redis.call('HGET', state, 'total'))
    return 'ok ' .. last, last
end

local function kept_outcome(kept)
    if kept == '!' then return 'err overflow the increment would overflow' end
    return 'dup ' .. kept
end

local function with_id(key, by)
    local kept = redis.call('GET', key)
    if kept then return kept_outcome(kept) end
    local line, keep = apply(by)
    redis.call('SET', key, keep, 'EX', id_ttl)
    return line
end

local function with_session(key, by, n)
    local expected = tonumber(redis.call('HGET', key, 'next') or '1')
    local line
    if n == expected then
        local keep
        line, keep = apply(by)
        redis.call('HSET', key, 'next', string.format('%d', n + 1), string.format('%d', n), keep)
        redis.call('HDEL', key, string.format('%d', n - window))
    elseif n > expected then
        return 'err out_of_order ' .. string.format('%d', expected)
    else
        local kept = redis.call('HGET', key, string.format('%d', n))
        line = kept and kept_outcome(kept) or 'old'
    end
    redis.call('EXPIRE', key, session_ttl)
    return line
end

local results = {}
for i = 8, #ARGV, 3 do
    local by, kind = ARGV[i], ARGV[i + 1]
    if kind == '' then
        results[#results + 1] = (apply(by))
    else
        local key = KEYS[tonumber(string.sub(kind, 2))]
        if string.sub(kind, 1, 1) == 'i' then
            results[#results + 1] = with_id(key, by)
        else
            results[#results + 1] = with_session(key, by, tonumber(ARGV[i + 2]))
        end
    end
end

local published = 'none'
if last then
    published = publish_bounded(state, channel, publish, last, interval)
end
results[#results + 1] = published
return results
