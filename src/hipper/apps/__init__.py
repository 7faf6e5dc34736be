"""Call-processing features on the call engine (engine/): voicemail, recording, conference, hunt groups and call
centers, message waiting, calls placed from the app. They import the engine; the engine never imports them — it
hands over through `engine.call.CallApplications`, which `apps.node.Applications` implements."""
