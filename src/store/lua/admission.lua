-- Admission from the head of the line, shared by admit.lua and join.lua
-- (prepended to both, after epoch.lua). Atomic with its caller: never above
-- capacity or the rate, nobody twice.
--
-- k: {ver, waiting, active, entries, epoch, prequeue, recent (list, newest
--     first), tally}
-- a: {capacity, ttl (ms), now (ms), freed (ms: when the slot was freed,
--     carried in the changes for the activation latency metric), known (the
--     epoch the caller knows, 0: none), rate (admissions per minute, 0: none)}
-- Appends an 'a' change per admission to `changes`; returns the epoch, the
-- moment the rate lets the next fan in (0: not held back) and whether a
-- pre-queue waits to be opened (1).
-- Admits nobody when the store's epoch is not the caller's (the caller
-- rebuilds first), while a rebuild holds admission, or while a pre-queue
-- waits to be opened.
--
-- The rate's pacing is RatePace's (src/store/mod.rs): an admission needs now
-- to have reached the next slot (epoch field next_slot, 60 s / rate apart on
-- a fixed grid) and fewer than `rate` admissions in the last 60 s; slots
-- owed (epoch field owed: the last step was held back by the rate, or an
-- opening anchored the grid) are made up up to RATE_OWED_MAX_MS late, others
-- only within RATE_CATCH_UP_MS (both defined before this file by
-- `with_admission` in src/store/redis.rs, from src/store/mod.rs).
local function admit_from_head(k, a, changes)
  local epoch = epoch_of(k.epoch)
  if a.known ~= 0 and a.known ~= epoch then
    return epoch, 0, 0
  end
  local now = a.now
  local hold = redis.call('HGET', k.epoch, 'hold_until')
  if hold and tonumber(hold) > now then
    return epoch, 0, 0
  end
  if redis.call('ZCARD', k.prequeue) > 0 then
    return epoch, 0, 1
  end
  local rate = a.rate
  local till = now + a.ttl
  local active = redis.call('ZCARD', k.active)
  local next_at = 0
  local admitted = 0
  local pace = redis.call('HMGET', k.epoch, 'next_slot', 'owed')
  local next_slot = tonumber(pace[1] or '0')
  local owed = pace[2] == '1'
  while active < a.capacity and redis.call('ZCARD', k.waiting) > 0 do
    if rate > 0 then
      local at = math.max(now, math.ceil(next_slot))
      if redis.call('LLEN', k.recent) >= rate then
        at = math.max(at, tonumber(redis.call('LINDEX', k.recent, rate - 1)) + 60000)
      end
      if now < at then
        next_at = at
        break
      end
      local interval = 60000 / rate
      -- Behind by less than the catch-up: keep the grid.
      local catch_up = RATE_CATCH_UP_MS
      if owed then
        catch_up = RATE_OWED_MAX_MS
      end
      if next_slot > 0 and now < next_slot + math.max(interval, catch_up) then
        next_slot = next_slot + interval
      else
        next_slot = now + interval
      end
      redis.call('LPUSH', k.recent, now)
      redis.call('LTRIM', k.recent, 0, rate - 1)
    end
    local head = redis.call('ZPOPMIN', k.waiting)
    local user = head[1]
    -- The session is named by the fan's spot (which their ticket names),
    -- whatever their place in line was.
    local seq = string.match(redis.call('HGET', k.entries, user) or '', '^w:(%d+):')
    if seq then
      redis.call('ZADD', k.active, till, user)
      redis.call('HSET', k.entries, user, 'a:' .. seq .. ':' .. till)
      local v = redis.call('INCR', k.ver)
      changes[#changes + 1] = {v = v, k = 'a', u = tonumber(user), seq = seq, t = till, f = a.freed}
      active = active + 1
      admitted = admitted + 1
    end
  end
  if rate > 0 then
    redis.call('HSET', k.epoch, 'next_slot', string.format('%.3f', next_slot),
      'owed', next_at > 0 and 1 or 0)
  end
  if admitted > 0 then
    redis.call('HINCRBY', k.tally, 'admitted', admitted)
  end
  return epoch, next_at, 0
end
