--- Guidance rules: how the UNet's predictions for several conditionings are
-- combined into the one noise estimate a scheduler steps with.
--
-- A rule is a table with two functions a recipe may call, replace or wrap:
--   rule:branches(i, n) -> list of branch names needed at step i (1-based)
--                          of n; their contexts are batched in one forward
--   rule:combine(pred, i, n) -> eps, where pred[name] is each branch's
--                          prediction
-- Branch names are keys of the `contexts` table given to lucid.sampling.run:
-- "cond" (the prompt), "uncond" (what the unconditional branch sees: the
-- empty prompt, or the negative prompt as every UI does), "empty" and
-- "neg" (the general three-branch form and delayed negatives).
local M = {}

--- Classifier-free guidance: e = e_u + s (e_c - e_u). With the negative
-- prompt as the "uncond" context this is the usual negative prompt.
function M.cfg(scale)
  local rule = {scale = scale, kind = "cfg"}
  function rule:branches(i, n)
    if self.scale == 1 then return {"cond"} end
    return {"uncond", "cond"}
  end
  function rule:combine(pred, i, n)
    if self.scale == 1 then return pred.cond end
    return pred.uncond + (pred.cond - pred.uncond) * self.scale
  end
  return rule
end

--- The general form with separate scales (three UNet branches):
-- e = e_empty + s_pos (e_cond - e_empty) - s_neg (e_neg - e_empty).
-- It equals cfg with the negative prompt when s_neg = s_pos - 1.
function M.general(s_pos, s_neg)
  local rule = {s_pos = s_pos, s_neg = s_neg, kind = "general"}
  function rule:branches() return {"empty", "cond", "neg"} end
  function rule:combine(pred)
    return pred.empty + (pred.cond - pred.empty) * self.s_pos - (pred.neg - pred.empty) * self.s_neg
  end
  return rule
end

--- The first step (0-based) from which a delayed change applies. An
-- integer counts steps directly (the golden reference's delay_step: 4 means
-- steps 0..3 keep the empty prompt). A fraction in (0, 1) follows A1111's
-- prompt editing, so `--negative-start 0.3` behaves as `[:negative:0.3]`:
-- w = min(n, int(f * n)) and the old prompt is kept through step w.
function M.step_of(when, n)
  if when == nil then return nil end
  if when > 0 and when < 1 then
    local w = math.min(n, math.floor(when * n))
    return w >= 1 and w + 1 or 0
  end
  return math.floor(when)
end

--- Delayed negative guidance (Ban et al., ECCV 2024): the unconditional
-- branch sees the empty prompt before step `start` (0-based count, or a
-- fraction of the steps) and the negative prompt from then on, until `stop`
-- (exclusive; nil = to the end). Needs contexts "empty" and "neg".
function M.delayed_negative(scale, start, stop)
  local rule = {scale = scale, start = start, stop = stop, kind = "delayed_negative"}
  --- true when step i (1-based) of n uses the negative prompt
  function rule:negative_active(i, n)
    local s0 = M.step_of(self.start, n) or 0
    local s1 = M.step_of(self.stop, n) or n
    local k = i - 1
    return k >= s0 and k < s1
  end
  function rule:branches(i, n)
    return {self:negative_active(i, n) and "neg" or "empty", "cond"}
  end
  function rule:combine(pred, i, n)
    local u = self:negative_active(i, n) and pred.neg or pred.empty
    return u + (pred.cond - u) * self.scale
  end
  return rule
end

return M
