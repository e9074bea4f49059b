-- Argo CD health of a Video2WorldJob or BestOfNJob, read from the status the operator writes.
-- Argo runs this with `obj` bound to the live object and expects a table {status=..., message=...}
-- with status one of Healthy, Progressing, Degraded, Suspended, Missing, Unknown.
local hs = {}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the job"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "The operator has not yet seen generation " .. tostring(generation) .. " of the spec"
  return hs
end

local conditions = status.conditions
local phase = status.phase

if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(condition(conditions, "Failed"), status.message or "Failed")
  return hs
end

if phase == "Succeeded" then
  local done = condition(conditions, "Succeeded")
  hs.status = "Healthy"
  hs.message = describe(done, status.message or "Succeeded")
  if status.best ~= nil and status.best.score ~= nil then
    hs.message = hs.message .. " (best score " .. tostring(status.best.score) .. ")"
  end
  return hs
end

if phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(condition(conditions, "Suspended"), status.message or "Suspended")
  return hs
end

-- Pending, Queued or Running: a refused spec or a missing dependency needs a person, so it is Degraded.
local accepted = condition(conditions, "Accepted")
if accepted ~= nil and accepted.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(accepted, "Not accepted")
  return hs
end

if phase == "Queued" then
  hs.status = "Progressing"
  hs.message = describe(condition(conditions, "Queued"), status.message or "Queued")
  return hs
end

if phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  local progress = status.progress
  if progress ~= nil and progress.summary ~= nil and progress.summary ~= "" then
    hs.message = phase .. ": " .. progress.summary
  else
    hs.message = describe(condition(conditions, "Running"), status.message or phase)
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
