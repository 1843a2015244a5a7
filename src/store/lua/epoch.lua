-- Shared by the scripts that change a show's queue (prepended to each).
--
-- The show's epoch (hash: id, floor, and hold_until while a rebuild holds
-- admission). Written at first use: the id is the Redis server's clock (ms),
-- and a fresh join sequence starts at the floor, id * 1000, so every spot of a
-- later epoch sorts after every spot of an earlier one. A counter that exists
-- without an epoch (data from before epochs) is kept, the floor just above it.
local function epoch_of(key)
  local e = redis.call('HMGET', key, 'id', 'floor')
  if e[1] then
    return tonumber(e[1]), tonumber(e[2])
  end
  return 0, 0
end

local function epoch_init(key, seq_key)
  local id, floor = epoch_of(key)
  if id ~= 0 then
    return id, floor
  end
  local t = redis.call('TIME')
  id = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = redis.call('GET', seq_key)
  if seq then
    floor = tonumber(seq) + 1
  else
    floor = id * 1000
    redis.call('SET', seq_key, floor - 1)
  end
  redis.call('HSET', key, 'id', id, 'floor', floor)
  return id, floor
end

-- Lua writes numbers with 14 significant digits; spots need 16 (still below
-- 2^53, so exact as doubles). `int` formats one exactly, and `encode` lets
-- `seq` and the positions (`p`, and `dp`: where a displaced fan went) travel
-- as strings inside the script, unquoted in the message.
local function int(n)
  return string.format('%d', n)
end

local function encode(msg)
  local json = string.gsub(cjson.encode(msg), '"seq":"(%d+)"', '"seq":%1')
  json = string.gsub(json, '"p":"(%d+)"', '"p":%1')
  return (string.gsub(json, '"dp":"(%d+)"', '"dp":%1'))
end

-- One step of the pre-queue's draw (drawn_place in src/store/mod.rs, the
-- same steps; join.lua and reseat.lua): of the n + 1 places in the drawn
-- order (the sorted set by position), the fan takes place draw % (n + 1)
-- (a draw below 2^40, so `%` is exact on Lua's doubles); if that is not the
-- new place at the end, `last` (above every position in it), the fan who
-- held it moves there. Returns the position taken and the fan displaced
-- (nil: none).
local function draw_place(prequeue, user, last, draw)
  local n = redis.call('ZCARD', prequeue)
  local j = tonumber(draw) % (n + 1)
  local pos, displaced = last, nil
  if j < n then
    local held = redis.call('ZRANGE', prequeue, j, j, 'WITHSCORES')
    displaced, pos = held[1], int(tonumber(held[2]))
    redis.call('ZADD', prequeue, last, displaced)
  end
  redis.call('ZADD', prequeue, pos, user)
  return pos, displaced
end


-- The demand ranking (a sorted set shared by every show, show id -> waiting +
-- pre-queued + active), set from the show's own sets in the step that changed
-- them, so it is exact whichever node ran the step; a show with none leaves
-- the ranking.
local function rank_demand(demand, show, waiting, prequeue, active)
  local n = redis.call('ZCARD', waiting) + redis.call('ZCARD', prequeue)
    + redis.call('ZCARD', active)
  if n > 0 then
    redis.call('ZADD', demand, n, show)
  else
    redis.call('ZREM', demand, show)
  end
end
