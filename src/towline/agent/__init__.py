"""The ``agent`` tool's pure parts: its input, the conversation's context window, the
model ladder of ``model: auto`` and the memory of past fixes. Workflow code
(:mod:`towline.workflows.agent`) and the activities (:mod:`towline.activities.agent`)
both import them; they import neither.
"""
