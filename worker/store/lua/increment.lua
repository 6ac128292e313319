#!lua
-- Apply batches of increments to one or more counters, each batch in order,
-- and publish each counter's state once (at most once per ARGV[6] ms:
-- publish_bounded in state.lua). One call carries every counter a worker has
-- ready for this Redis in one turn of its loop: one script run and one reply
-- for all of them, not one per counter. On a Redis Cluster a call carries one
-- counter (its keys share the counter's slot).
-- The shebang declares a script that writes: Redis at maxmemory refuses it
-- before it runs (OOM), never halfway, and a read-only replica refuses it too.
--
-- ARGV[1]  the publish command: PUBLISH, or SPUBLISH on a Redis Cluster, where
--          the channel lives on the shard of the counter's slot
-- ARGV[2]  a fresh random epoch, taken by each counter of the call that has
--          no state yet (an epoch tells one counter's lives apart, so
--          counters may share one)
-- ARGV[3]  seconds an increment id is remembered
-- ARGV[4]  seconds an idle session is remembered
-- ARGV[5]  W, how many outcomes a session keeps
-- ARGV[6]  the least ms between two publishes of a counter (0: no bound)
-- Then one segment per counter, its keys next in KEYS:
--   the counter's channel; K, how many keys it has; M, how many increments;
--   then M triples (by, kind, n): kind '' (bare), 'iJ' (the id key that is
--   the segment's J-th key) or 'sJ' (number n of the session whose hash is
--   the segment's J-th key).
-- A segment's keys: its state hash (fields epoch, seq, total) first, then
-- the id keys and session hashes its increments name, each once.
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
-- Returns one array per segment: one line per increment, 'ok STATE',
-- 'dup STATE', 'old', 'err overflow MESSAGE' or 'err out_of_order NEXT'; then
-- one more line, how the state went out: 'sent', 'held' (flush.lua sends it)
-- or 'none' (unchanged). An error reply is the whole call's: every counter
-- in it hears it.
--
-- Totals stay strings: Lua numbers are doubles, exact only up to 2^53, while
-- HINCRBY works on the exact 64-bit integer inside Redis and refuses to
-- overflow. seq and n are Lua numbers but never come near 2^53.
local publish, fresh_epoch = ARGV[1], ARGV[2]
local id_ttl, session_ttl, window = ARGV[3], ARGV[4], tonumber(ARGV[5])
local interval = tonumber(ARGV[6])

local function kept_outcome(kept)
    if kept == '!' then return 'err overflow the increment would overflow' end
    return 'dup ' .. kept
end

-- One counter's segment: its increments applied in order, its state published.
local function run_segment(first_key, channel, arg, count)
    local state = KEYS[first_key]
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
    for i = arg, arg + 3 * (count - 1), 3 do
        local by, kind = ARGV[i], ARGV[i + 1]
        if kind == '' then
            results[#results + 1] = (apply(by))
        else
            local key = KEYS[first_key - 1 + tonumber(string.sub(kind, 2))]
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
end

local segments = {}
local first_key, arg = 1, 7
while arg <= #ARGV do
    local channel, keys, count = ARGV[arg], tonumber(ARGV[arg + 1]), tonumber(ARGV[arg + 2])
    segments[#segments + 1] = run_segment(first_key, channel, arg + 3, count)
    first_key = first_key + keys
    arg = arg + 3 + 3 * count
end
return segments
