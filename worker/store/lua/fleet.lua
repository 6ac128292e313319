#!lua
-- A worker's connection count, reported, and every live worker's read back, in
-- one step, on Redis' clock (so the workers' clocks need not agree).
-- KEYS[1]: the fleet's hash, one field per worker: "count when_ms".
-- ARGV: this worker's id, its count, and the age (ms) past which a field is a
-- worker gone: those are deleted, so the hash holds a field per live worker,
-- however many come and go. Returns Redis' time (ms), then id, count pairs.
local key, me, count, stale = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
redis.call("HSET", key, me, count .. " " .. now)
-- Gone with the last worker, not kept for ever.
redis.call("EXPIRE", key, math.ceil(stale / 1000) * 4)
local fields = redis.call("HGETALL", key)
local live = {tostring(now)}
for i = 1, #fields, 2 do
  local seen, at = string.match(fields[i + 1], "^(%d+) (%d+)$")
  if at == nil or now - tonumber(at) > stale then
    redis.call("HDEL", key, fields[i])
  else
    live[#live + 1] = fields[i]
    live[#live + 1] = seen
  end
end
return live
