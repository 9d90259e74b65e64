"""Face analysis: detection, 478 landmarks, selfie matte, photo camera and head pose."""
